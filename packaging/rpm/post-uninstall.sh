# custody-agent %postun ($1: 0 on erase, 1 on upgrade): restart a running
# agent after an upgrade. On erase the state directory is kept: it holds
# the host key, the checkpoints that continue every stream's hash chain in
# the store, and possibly evidence not yet shipped (see install-rhel.md).
STATE_DIR=/var/lib/custody-agent
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart custody-agent.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ] && [ -d "$STATE_DIR" ]; then
    echo "custody-agent: kept $STATE_DIR (host key, chain checkpoints, unshipped evidence)."
    echo "  Once 'custody-agent status --state-dir $STATE_DIR' shows nothing waiting in the spool"
    echo "  and this host will never ship to the same store again, remove it with: rm -rf $STATE_DIR"
fi
exit 0
