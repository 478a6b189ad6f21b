# custody-agent %preun ($1: 0 on erase, 1 on upgrade): stop and disable
# the service when the package goes away (not on upgrade). On SIGTERM the
# agent flushes and ships what it can; the rest stays in the state
# directory's spool.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now custody-agent.service >/dev/null 2>&1 || :
fi
exit 0
