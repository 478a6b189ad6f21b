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
#  4. runs the installed agent there as the service user on Debian's own
#     permission layout (auth.log root:adm 0640), then custody-verify on
#     what it shipped and `custody-agent status`;
#  5. upgrades to a second build with a higher version: the edited
#     conffile is kept;
#  6. removes and purges: binaries and conffile go, the state directory
#     (host key, chain checkpoints, unshipped evidence) stays.
#
# Environment: CUSTODY_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# CUSTODY_DEBIAN_SUITE (default bookworm), CUSTODY_PKG_KEEP=1 keeps the
# work directory for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

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

for tool in cargo-deb cargo-generate-rpm rpm rpm2cpio cpio debootstrap dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is not installed (.ci/run installs it)"
done
[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and chroot need it"

WORK=$(mktemp -d /var/tmp/custody-pkg.XXXXXX)
ROOT=$WORK/root
AGENT_PID=""
cleanup() {
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -KILL "$AGENT_PID" 2>/dev/null || true
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
cargo generate-rpm -p custody-agent --profile dist -o "$WORK/custody-agent.rpm"
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
mkdir -p "$WORK/rpm"
(cd "$WORK/rpm" && rpm2cpio "$RPM" | cpio -idm --quiet)
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
cp "$DEB1" "$DEB2" "$ROOT/tmp/"
in_root dpkg -i "/tmp/$(basename "$DEB1")"

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
check "agent.toml is root:custody 640" test "$(stat -c '%U:%G %a' "$ROOT/etc/custody/agent.toml")" = "root:custody 640"
check "agent.toml is the Debian example" cmp -s "$ROOT/etc/custody/agent.toml" packaging/debian/agent.toml
UNIT=""
for d in lib/systemd/system usr/lib/systemd/system; do
    [ -f "$ROOT/$d/custody-agent.service" ] && UNIT=/$d/custody-agent.service
done
check "the unit is installed" test -n "$UNIT"
check "the unit is packaging/systemd/custody-agent.service" cmp -s "$ROOT$UNIT" packaging/systemd/custody-agent.service
check "the unit is not enabled before the store is configured" \
    test ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/custody-agent.service"
check "state dir is custody:custody 750" test "$(stat -c '%U:%G %a' "$ROOT/var/lib/custody-agent")" = "custody:custody 750"
check "custody-agent --version runs in the root" \
    grep -qxF "custody-agent $VERSION" <<<"$(in_root custody-agent --version)"
check "custody-verify runs in the root" in_root custody-verify --version
check "systemd-analyze verify passes on the installed unit" in_root systemd-analyze verify custody-agent.service
exposure=$(in_root systemd-analyze security --offline=true "$UNIT" 2>&1 | grep -F 'Overall exposure level' || true)
echo "systemd-analyze security: $exposure"
check "systemd-analyze security reports the exposure" test -n "$exposure"

# --- 4. the installed agent, run as its user on Debian's permissions -----------
log "running the installed agent as custody on auth.log (root:adm 0640)"
auth_line="$(date -u +'%b %e %H:%M:%S') pkgtest sshd[4242]: Accepted publickey for admin from 192.0.2.10 port 50022 ssh2: custody-package-test-$$"
printf '%s\n' "$auth_line" >"$ROOT/var/log/auth.log"
chown root:adm "$ROOT/var/log/auth.log"
chmod 0640 "$ROOT/var/log/auth.log"
in_root install -d -o custody -g custody -m 0750 /srv/custody-store
# The administrator's edit, which the upgrade below must keep.
sed -i -e 's|^store = .*|store = "/srv/custody-store"|' \
    -e 's|^#host_id = .*|host_id = "pkg-test"|' "$ROOT/etc/custody/agent.toml"
# Shown, not counted: most example sources match no file in a bare root.
in_root custody-agent check-config --config /etc/custody/agent.toml || true
chroot "$ROOT" setpriv --reuid=custody --regid=custody --init-groups --inh-caps=-all \
    custody-agent run --config /etc/custody/agent.toml >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
shipped=""
for _ in $(seq 1 120); do
    kill -0 "$AGENT_PID" 2>/dev/null || break
    if grep -q "custody-package-test-$$" <(find "$ROOT/srv/custody-store" -name '*.zst' -exec zstd -dcq {} + 2>/dev/null); then
        shipped=yes
        break
    fi
    sleep 0.5
done
check "the agent (as custody, via group adm) shipped the auth.log line" test -n "$shipped"
in_root custody-agent status || true
kill -TERM "$AGENT_PID" 2>/dev/null || true
agent_rc=0
wait "$AGENT_PID" || agent_rc=$?
AGENT_PID=""
check "the agent exits 0 on SIGTERM" test "$agent_rc" -eq 0
[ "$agent_rc" -eq 0 ] || tail -30 "$WORK/agent.log"
check "custody-verify accepts what it shipped" in_root custody-verify store /srv/custody-store
check "the host key is the agent's own (custody, 600)" \
    test "$(stat -c '%U %a' "$ROOT/var/lib/custody-agent/host_key")" = "custody 600"

# --- 5. upgrade -------------------------------------------------------------------
log "dpkg -i custody-agent $VERSION-2 (upgrade)"
in_root dpkg -i "/tmp/$(basename "$DEB2")"
check "the upgrade installed $VERSION-2" \
    test "$(in_root dpkg-query -W -f='${Version}' custody-agent)" = "$VERSION-2"
check "the upgrade kept the edited conffile (store)" grep -qx 'store = "/srv/custody-store"' "$ROOT/etc/custody/agent.toml"
check "the upgrade kept the edited conffile (host_id)" grep -qx 'host_id = "pkg-test"' "$ROOT/etc/custody/agent.toml"
check "the upgrade left no .dpkg-dist beside it" test ! -e "$ROOT/etc/custody/agent.toml.dpkg-dist"
check "agent.toml is still root:custody 640" test "$(stat -c '%U:%G %a' "$ROOT/etc/custody/agent.toml")" = "root:custody 640"

# --- 6. remove and purge -----------------------------------------------------------
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
