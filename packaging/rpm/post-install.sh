# custody-agent %post ($1: 1 on install, 2 on upgrade): the service user,
# its groups, the state directory and the configuration file's owner.
STATE_DIR=/var/lib/custody-agent
CONFIG=/etc/custody/agent.toml
getent group custody >/dev/null || groupadd --system custody
getent passwd custody >/dev/null || useradd --system --gid custody --home-dir "$STATE_DIR" \
    --no-create-home --shell /sbin/nologin --comment "custody agent" custody
# Read access to the logs: adm, systemd-journal (the journal), utmp (btmp).
# RHEL's rsyslog writes /var/log/messages and /var/log/secure as root-only
# 0600 files, so the unit's drop-in rhel-read-logs.conf also grants
# CAP_DAC_READ_SEARCH (read-only access).
for group in adm systemd-journal utmp; do
    if getent group "$group" >/dev/null; then
        usermod --append --groups "$group" custody
    fi
done
install -d -m 0750 -o custody -g custody "$STATE_DIR"
# The configuration: readable by the agent, not by everyone. Only a file
# as rpm installs it (group root) is changed.
if [ -f "$CONFIG" ] && [ "$(stat -c %G "$CONFIG")" = root ]; then
    chown root:custody "$CONFIG"
    chmod 0640 "$CONFIG"
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Installed, not enabled: the store must be configured first.
    echo "custody-agent installed but not started: set the store in $CONFIG, check it with"
    echo "  custody-agent check-config --config $CONFIG"
    echo "then: systemctl enable --now custody-agent   (see /usr/share/doc/custody-agent/install-rhel.md)"
fi
exit 0
