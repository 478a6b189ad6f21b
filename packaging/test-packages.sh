#!/usr/bin/env bash
# Builds the custody-agent .deb and .rpm and checks them the way an
# administrator would meet them (called from .ci/run; needs root):
#  1. builds both from the `dist` profile (release, stripped);
#  2. the .rpm: its file list (rpm -qlp), %config(noreplace), scriptlets
#     (shell syntax, the user they create), the unit and config it carries;
#  3. installs the .deb into a clean Debian root made by debootstrap (fresh
#     every run: nothing cached that could hide a missing install step) and
#     checks, inside the chroot: the service user and its groups, the
#     conffile, the unit (systemd-analyze verify, security exposure), the
#     state directory, `custody-agent --version`;
#  4. boots that root with systemd-nspawn and lets systemd run the packaged
#     unit with all its hardening: READY=1, STATUS=, watchdog pings, the
#     service user reading auth.log (root:adm 0640) through its group,
#     a SIGSTOPped agent killed by the watchdog and restarted, a clean
#     stop, custody-verify on what it shipped;
#     then a root-only 0600 file (RHEL's layout): refused under the Debian
#     unit, shipped with the RHEL drop-in (CapEff = CAP_DAC_READ_SEARCH
#     only, /etc/shadow still inaccessible);
#  5. upgrades, with the service running, to a second build with a higher
#     version: the edited conffile is kept and the agent restarted;
#  6. removes and purges: binaries and conffile go, the state directory
#     (host key, chain checkpoints, unshipped evidence) stays.
#
# Environment: CUSTODY_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# CUSTODY_DEBIAN_SUITE (default bookworm), CUSTODY_PKG_KEEP=1 keeps the
# work directory for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${CUSTODY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${CUSTODY_DEBIAN_SUITE:-bookworm}
passed=0
failed=0

log() { printf '\n== packages: %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; passed=$((passed + 1)); }
bad() { printf 'FAILED: %s\n' "$*" >&2; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: runs COMMAND, counts the outcome.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
die() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

for tool in cargo-deb cargo-generate-rpm rpm debootstrap dpkg-deb systemd-nspawn nsenter zstd; do
    command -v "$tool" >/dev/null || die "$tool is not installed (.ci/run installs it)"
done
[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and chroot need it"

WORK=$(mktemp -d /var/tmp/custody-pkg.XXXXXX)
ROOT=$WORK/root
NSPAWN_PID=""
cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    if mountpoint -q "$ROOT/proc" 2>/dev/null; then umount "$ROOT/proc" || true; fi
    if [ "${CUSTODY_PKG_KEEP:-0}" = 1 ]; then
        echo "CUSTODY_PKG_KEEP: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# --- 1. build ------------------------------------------------------------------
log "building the dist profile"
cargo build --locked --profile dist -p custody-agent -p custody-evidence --bins
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/dist
VERSION=$("$BIN/custody-agent" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "custody-agent --version printed no version"

log "building custody-agent $VERSION as .deb (revisions 1 and 2) and .rpm"
cargo deb -p custody-agent --profile dist --no-build --deb-version "$VERSION-1" -o "$WORK/custody-agent_$VERSION-1.deb"
cargo deb -p custody-agent --profile dist --no-build --deb-version "$VERSION-2" -o "$WORK/custody-agent_$VERSION-2.deb"
cargo generate-rpm -p agent --profile dist -o "$WORK/custody-agent.rpm"
DEB1=$WORK/custody-agent_$VERSION-1.deb
DEB2=$WORK/custody-agent_$VERSION-2.deb
RPM=$WORK/custody-agent.rpm
ls -l "$DEB1" "$DEB2" "$RPM"

# --- 2. the rpm -----------------------------------------------------------------
log "rpm -qlp and friends"
rpm_files=$(rpm -qlp "$RPM")
echo "$rpm_files"
for f in /usr/bin/custody-agent /usr/bin/custody-verify \
    /usr/lib/systemd/system/custody-agent.service \
    /usr/lib/systemd/system/custody-agent.service.d/rhel-read-logs.conf \
    /etc/custody/agent.toml /usr/share/doc/custody-agent/install-rhel.md; do
    check "rpm contains $f" grep -qxF "$f" <<<"$rpm_files"
done
check "rpm marks /etc/custody/agent.toml as config" \
    grep -qxF /etc/custody/agent.toml <<<"$(rpm -qcp "$RPM")"
# FILEFLAGS: c = %config, n = noreplace (kept on upgrade, new one as .rpmnew).
check "rpm config is %config(noreplace)" \
    grep -qE '^cn /etc/custody/agent.toml$' <<<"$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM")"
check "rpm requires shadow-utils (useradd)" grep -q '^shadow-utils' <<<"$(rpm -qpR "$RPM")"
scripts=$(rpm -qp --scripts "$RPM")
check "rpm %post creates the custody user" grep -q 'useradd --system' <<<"$scripts"
for s in post-install pre-uninstall post-uninstall; do
    check "rpm scriptlet $s.sh is valid sh" sh -n "packaging/rpm/$s.sh"
done
check "rpm digests verify (rpm -K)" rpm -K "$RPM"
# rpm itself unpacks it into an empty root (scriptlets need a RHEL
# userland, so they are only syntax-checked above).
mkdir -p "$WORK/rpm"
rpm --root "$WORK/rpm" --initdb
check "rpm installs the package into an empty root" \
    rpm --root "$WORK/rpm" -i --nodeps --noscripts --nosignature "$RPM"
check "rpm unit is packaging/systemd/custody-agent.service" \
    cmp -s "$WORK/rpm/usr/lib/systemd/system/custody-agent.service" packaging/systemd/custody-agent.service
check "rpm config is the RHEL example" cmp -s "$WORK/rpm/etc/custody/agent.toml" packaging/rhel/agent.toml
check "rpm binary runs (--version)" \
    grep -qxF "custody-agent $VERSION" <<<"$("$WORK/rpm/usr/bin/custody-agent" --version)"

# --- 3. a clean Debian root with the .deb -------------------------------------
log "debootstrap $SUITE (minbase + systemd) into $ROOT"
debootstrap --variant=minbase --include=systemd "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log above)"; }
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" "$@"; }
check "the fresh root has no custody user" sh -c "! chroot '$ROOT' getent passwd custody >/dev/null"

log "dpkg -i custody-agent $VERSION-1"
cp "$DEB1" "$DEB2" "$ROOT/var/tmp/"
in_root dpkg -i "/var/tmp/$(basename "$DEB1")"

passwd_line=$(in_root getent passwd custody || true)
check "user custody exists" test -n "$passwd_line"
check "custody is a system user (uid < 1000)" test "$(cut -d: -f3 <<<"$passwd_line")" -lt 1000
check "custody's shell is nologin" grep -q ':/usr/sbin/nologin$' <<<"$passwd_line"
groups=" $(in_root id -nG custody) "
for g in adm systemd-journal utmp; do
    check "custody is in group $g" grep -q " $g " <<<"$groups"
done
check "agent.toml is a conffile" \
    grep -q '/etc/custody/agent.toml' <<<"$(in_root dpkg-query -W -f='${Conffiles}' custody-agent)"
check "agent.toml is root:custody 640" test "$(in_root stat -c '%U:%G %a' /etc/custody/agent.toml)" = "root:custody 640"
check "agent.toml is the Debian example" cmp -s "$ROOT/etc/custody/agent.toml" packaging/debian/agent.toml
UNIT=""
for d in lib/systemd/system usr/lib/systemd/system; do
    [ -f "$ROOT/$d/custody-agent.service" ] && UNIT=/$d/custody-agent.service
done
check "the unit is installed" test -n "$UNIT"
check "the unit is packaging/systemd/custody-agent.service" cmp -s "$ROOT$UNIT" packaging/systemd/custody-agent.service
check "the unit is not enabled before the store is configured" \
    test ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/custody-agent.service"
check "state dir is custody:custody 750" test "$(in_root stat -c '%U:%G %a' /var/lib/custody-agent)" = "custody:custody 750"
check "custody-agent --version runs in the root" \
    grep -qxF "custody-agent $VERSION" <<<"$(in_root custody-agent --version)"
check "custody-verify runs in the root" in_root custody-verify --version
check "systemd-analyze verify passes on the installed unit" in_root systemd-analyze verify custody-agent.service
exposure=$(in_root systemd-analyze security --offline=true "$UNIT" 2>&1 | grep -F 'Overall exposure level' || true)
echo "systemd-analyze security: $exposure"
check "systemd-analyze security reports the exposure" test -n "$exposure"

# --- 4. the installed unit under a real systemd -----------------------------------
# The root is booted with systemd-nspawn and the packaged unit is started by
# systemd itself, with all its hardening (user custody, empty capability
# set, system call filter, read-only system). The only change is a CI
# drop-in with a 4 s watchdog (instead of 30 s) so the watchdog restart can
# be seen quickly.
log "booting the root with systemd-nspawn; systemctl start custody-agent"
auth_line="$(date -u +'%b %e %H:%M:%S') pkgtest sshd[4242]: Accepted publickey for admin from 192.0.2.10 port 50022 ssh2: custody-package-test-$$"
printf '%s\n' "$auth_line" >"$ROOT/var/log/auth.log"
# Debian's own permissions: only root and group adm may read it.
chown root:adm "$ROOT/var/log/auth.log"
chmod 0640 "$ROOT/var/log/auth.log"
in_root install -d -o custody -g custody -m 0750 /srv/custody-store
# The administrator's edits (which the upgrade below must keep) and the
# drop-in a non-default store directory needs (docs/install-debian.md).
sed -i -e 's|^store = .*|store = "/srv/custody-store"|' \
    -e 's|^#host_id = .*|host_id = "pkg-test"|' "$ROOT/etc/custody/agent.toml"
mkdir -p "$ROOT/etc/systemd/system/custody-agent.service.d"
printf '[Service]\nReadWritePaths=/srv/custody-store\n' >"$ROOT/etc/systemd/system/custody-agent.service.d/store.conf"
printf '[Service]\nWatchdogSec=4s\nTimeoutAbortSec=3s\n' >"$ROOT/etc/systemd/system/custody-agent.service.d/ci-watchdog.conf"
# Shown, not counted: most example sources match no file in a bare root.
in_root custody-agent check-config --config /etc/custody/agent.toml || true
umount "$ROOT/proc"
# nspawn's own system call filter refuses adjtimex(2), even read-only, to a
# container without CAP_SYS_TIME; granting it to the container lets the
# test see the unit's filter (which must allow adjtimex) and nothing else.
# The agent itself still runs with an empty capability set. Nothing in
# this minimal root sets the clock (no time-sync daemon is installed).
systemd-nspawn -q --register=no --keep-unit --capability=CAP_SYS_TIME -D "$ROOT" -b >"$WORK/nspawn.log" 2>&1 &
NSPAWN_PID=$!
CT_INIT=""
in_ct() { nsenter -t "$CT_INIT" -m -u -i -n -p -r -w "$@"; }
# unit_prop PROPERTY: the unit's property value, as systemctl show says.
unit_prop() { in_ct systemctl show -p "$1" --value custody-agent.service; }
booted=""
for _ in $(seq 1 240); do
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    CT_INIT=${CT_INIT:-$(pgrep -P "$NSPAWN_PID" | head -1 || true)}
    if [ -n "$CT_INIT" ]; then
        state=$(in_ct systemctl is-system-running 2>/dev/null || true)
        case $state in running | degraded) booted=$state; break ;; esac
    fi
    sleep 0.5
done
if [ -z "$booted" ]; then
    tail -30 "$WORK/nspawn.log"
    die "the Debian root did not boot under systemd-nspawn (log above)"
fi
ok "the root boots with systemd ($booted)"
check "systemctl start custody-agent succeeds (READY=1 received)" in_ct systemctl start custody-agent.service
check "the unit is active" test "$(unit_prop ActiveState)" = active
check "the unit runs as custody" test "$(in_ct stat -c %U "/proc/$(unit_prop MainPID)")" = custody
shipped=""
for _ in $(seq 1 120); do
    if find "$ROOT/srv/custody-store" -name '*.zst' -exec zstd -dcq {} + 2>/dev/null | grep -q "custody-package-test-$$"; then
        shipped=yes
        break
    fi
    sleep 0.5
done
check "the service (as custody, via group adm) shipped the auth.log line" test -n "$shipped"
status_text=""
for _ in $(seq 1 60); do
    status_text=$(unit_prop StatusText)
    case $status_text in *"waiting in the spool"*) break ;; esac
    sleep 0.5
done
echo "systemctl status says: $status_text"
check "systemd shows the agent's STATUS= summary" grep -q 'waiting in the spool' <<<"$status_text"
first_ping=$(unit_prop WatchdogTimestampMonotonic)
later_ping=$first_ping
for _ in $(seq 1 60); do
    later_ping=$(unit_prop WatchdogTimestampMonotonic)
    [ "$later_ping" != "$first_ping" ] && break
    sleep 0.5
done
check "systemd receives watchdog pings" test "$later_ping" != "$first_ping"
in_ct custody-agent status || true
check "custody-agent status says running" grep -q '^agent: running' <<<"$(in_ct custody-agent status || true)"
journal=$(in_ct journalctl -u custody-agent.service --no-pager -o cat)
check "the agent logged its start" grep -q 'custody-agent started' <<<"$journal"
if grep -Eqi 'operation not permitted|permission denied|SIGSYS|bad system call' <<<"$journal"; then
    bad "no system call or permission was refused"
    grep -Ei 'operation not permitted|permission denied|SIGSYS|bad system call' <<<"$journal" | head -5
else
    ok "no system call or permission was refused"
fi

log "a root-only log (RHEL's layout): unreadable under the Debian unit, read with the RHEL drop-in"
msg_line="$(date -u +'%b %e %H:%M:%S') pkgtest kernel: custody-package-rhel-$$"
printf '%s\n' "$msg_line" >"$ROOT/var/log/messages"
chown root:root "$ROOT/var/log/messages"
chmod 0600 "$ROOT/var/log/messages"
printf '\n[[sources]]\nname = "messages"\ncategory = "os"\npaths = ["/var/log/messages*"]\n' >>"$ROOT/etc/custody/agent.toml"
in_ct systemctl restart custody-agent.service
denied=""
for _ in $(seq 1 120); do
    if in_ct journalctl -u custody-agent.service --no-pager -o cat |
        grep -q 'cannot read /var/log/messages (mode 600, owner 0:0): permission denied'; then
        denied=yes
        break
    fi
    sleep 0.5
done
check "without the drop-in the agent cannot read a root-only 0600 file (and says so)" test -n "$denied"
cp packaging/rpm/rhel-read-logs.conf "$ROOT/etc/systemd/system/custody-agent.service.d/"
in_ct systemctl daemon-reload
in_ct systemctl restart custody-agent.service
read_root_only=""
for _ in $(seq 1 120); do
    if find "$ROOT/srv/custody-store" -name '*.zst' -exec zstd -dcq {} + 2>/dev/null | grep -q "custody-package-rhel-$$"; then
        read_root_only=yes
        break
    fi
    sleep 0.5
done
check "with rhel-read-logs.conf the agent ships the root-only file" test -n "$read_root_only"
check "its only effective capability is CAP_DAC_READ_SEARCH" \
    grep -qx 'CapEff:[[:space:]]*0000000000000004' <<<"$(in_ct cat "/proc/$(unit_prop MainPID)/status")"
# InaccessiblePaths= puts a mode-000 node over /etc/shadow in its namespace.
check "/etc/shadow is inaccessible to it even so" \
    test "$(in_ct stat -L -c %a "/proc/$(unit_prop MainPID)/root/etc/shadow")" = 0

log "SIGSTOP the agent: the watchdog must fire and systemd restart it"
old_pid=$(unit_prop MainPID)
in_ct sh -c "kill -STOP $old_pid"
restarted=""
for _ in $(seq 1 120); do
    if [ "$(unit_prop NRestarts)" -ge 1 ] && [ "$(unit_prop ActiveState)" = active ] &&
        [ "$(unit_prop MainPID)" != "$old_pid" ] && [ "$(unit_prop MainPID)" != 0 ]; then
        restarted=yes
        break
    fi
    sleep 0.5
done
check "a hung agent is killed by the watchdog and restarted" test -n "$restarted"
check "the journal says why (watchdog timeout)" \
    grep -qi 'watchdog timeout' <<<"$(in_ct journalctl -u custody-agent.service --no-pager)"

# --- 5. upgrade, with the service running -------------------------------------------
log "dpkg -i custody-agent $VERSION-2 while the service runs (upgrade)"
before_pid=$(unit_prop MainPID)
in_ct dpkg -i "/var/tmp/$(basename "$DEB2")"
check "the upgrade installed $VERSION-2" \
    test "$(in_ct dpkg-query -W -f='${Version}' custody-agent)" = "$VERSION-2"
check "the upgrade kept the edited conffile (store)" grep -qx 'store = "/srv/custody-store"' "$ROOT/etc/custody/agent.toml"
check "the upgrade kept the edited conffile (host_id)" grep -qx 'host_id = "pkg-test"' "$ROOT/etc/custody/agent.toml"
check "the upgrade left no .dpkg-dist beside it" test ! -e "$ROOT/etc/custody/agent.toml.dpkg-dist"
check "agent.toml is still root:custody 640" test "$(in_ct stat -c '%U:%G %a' /etc/custody/agent.toml)" = "root:custody 640"
check "the upgrade restarted the running agent" \
    test "$(unit_prop ActiveState)" = active -a "$(unit_prop MainPID)" != "$before_pid"

check "systemctl stop custody-agent succeeds" in_ct systemctl stop custody-agent.service
check "the agent stopped cleanly (exit 0)" test "$(unit_prop ExecMainStatus)" = 0
check "custody-verify accepts what it shipped" in_ct custody-verify store /srv/custody-store
# The unit's system call filter must let adjtimex through: every digest
# records whether the clock is NTP-synchronised (null means unknown).
clock_known() {
    python3 - "$ROOT/srv/custody-store" <<'PY'
import json, pathlib, sys
digests = list(pathlib.Path(sys.argv[1]).rglob("*.digest.json"))
states = [json.loads(p.read_bytes())["clock"]["synchronized"] for p in digests]
print(f"{len(digests)} digests, clock synchronized: {sorted(set(map(str, states)))}")
sys.exit(0 if digests and None not in states else 1)
PY
}
check "digests written under the unit record the clock state (adjtimex allowed)" clock_known
check "the host key is the agent's own (custody, 600)" \
    test "$(in_ct stat -c '%U %a' /var/lib/custody-agent/host_key)" = "custody 600"
in_ct systemctl poweroff >/dev/null 2>&1 || true
nspawn_rc=0
wait "$NSPAWN_PID" || nspawn_rc=$?
NSPAWN_PID=""
echo "the container shut down (nspawn exit $nspawn_rc)"
rm -f "$ROOT/etc/systemd/system/custody-agent.service.d/ci-watchdog.conf"
mount -t proc proc "$ROOT/proc"

# --- 6. remove and purge (in the chroot again) -----------------------------------------------------------
log "dpkg -r, then dpkg --purge"
in_root dpkg -r custody-agent
check "remove deletes the binary" test ! -e "$ROOT/usr/bin/custody-agent"
check "remove keeps the conffile" test -f "$ROOT/etc/custody/agent.toml"
purge_out=$(in_root dpkg --purge custody-agent 2>&1)
echo "$purge_out"
check "purge deletes the conffile" test ! -e "$ROOT/etc/custody/agent.toml"
check "purge keeps the state directory (host key, checkpoints)" test -f "$ROOT/var/lib/custody-agent/host_key"
check "purge says why the state directory stays" grep -q 'kept /var/lib/custody-agent' <<<"$purge_out"

printf '\npackages: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
