#!/usr/bin/env bash
# The agent as a Windows service under Wine's Service Control Manager (.ci/run,
# issue 5): `service install --config FILE --manual`, `service start`, lines
# appended to the log are shipped, `service stop` is the graceful shutdown
# (the SCM's SERVICE_CONTROL_STOP), the Linux custody-verify checks the store,
# `service uninstall` removes it. Wine keeps services alive only while its
# wineserver runs, so a persistent wineserver is started for the test.
# Wine refuses the restart-on-failure settings (ChangeServiceConfig2): the
# install warns and goes on; that part is for a real Windows.
#
# Usage: wine-service.sh AGENT_EXE LINUX_CUSTODY_VERIFY
set -euo pipefail
exe=${1:?usage: wine-service.sh AGENT_EXE LINUX_CUSTODY_VERIFY}
verify=${2:?usage: wine-service.sh AGENT_EXE LINUX_CUSTODY_VERIFY}
export WINEDEBUG=${WINEDEBUG:--all}
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)

work=$(mktemp -d /tmp/custody-wine-service.XXXXXX)
cleanup() {
  wine "$exe" service uninstall >/dev/null 2>&1 || true
  "$wineserver" -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "wine-service: FAILED: $*" >&2
  echo "--- agent.log" >&2; cat "$work/state/agent.log" >&2 || true
  exit 1
}
win() { winepath -w "$1"; }
mkdir -p "$work/logs"
printf 'svc line 0001\r\n' > "$work/logs/app.log"
cat > "$work/agent.toml" <<TOML
host_id = "wine-service"
state_dir = '$(win "$work/state")'
store = '$(win "$work/store")'
segment_max_age_ms = 200
digest_interval_ms = 1000
poll_interval_ms = 500

[[sources]]
name = "app"
category = "app"
paths = ['$(win "$work/logs")\\app.log*']
TOML

# A fresh, persistent wineserver for this prefix (one already running, not
# persistent, would end the service with the last Wine program).
"$wineserver" -k 2>/dev/null || true
"$wineserver" -w 2>/dev/null || true
"$wineserver" -p 300 || fail "cannot start a persistent wineserver"
wine "$exe" service install --manual --config "$(win "$work/agent.toml")" || fail "service install"
wine "$exe" service start || fail "service start"
for i in $(seq 2 100); do printf 'svc line %04d\r\n' "$i"; done >> "$work/logs/app.log"
deadline=$((SECONDS + 120))
until python3 - "$work/state/status.json" <<'PY' 2>/dev/null
import json, sys
s = json.load(open(sys.argv[1]))
f = [f for src in s["sources"] for f in src["files"]]
sys.exit(0 if s["running"] and len(f) == 1 and f[0]["offset"] == f[0]["size"] == 100 * 15 and s["spool"]["segments"] == 0 else 1)
PY
do
  [ "$SECONDS" -lt "$deadline" ] || fail "the service did not ship the log within 120 s"
  sleep 0.3
done
# `custody-agent status` answers for the service (exit 0: running, no errors).
wine "$exe" status --state-dir "$(win "$work/state")" >/dev/null || fail "custody-agent status"
wine "$exe" service stop || fail "service stop"
grep -q 'service stop requested by the Service Control Manager' "$work/state/agent.log" || fail "the stop did not reach the agent"
grep -q 'custody-agent stopped' "$work/state/agent.log" || fail "no clean stop in agent.log"
wine "$exe" service uninstall || fail "service uninstall"
if wine "$exe" service stop 2>"$work/err"; then fail "service stop after uninstall succeeded"; fi
grep -q 'is not installed' "$work/err" || fail "unexpected error after uninstall: $(cat "$work/err")"
"$verify" store "$work/store" > "$work/verify.txt" 2>&1 || { cat "$work/verify.txt" >&2; fail "custody-verify store"; }
for i in $(seq 1 100); do printf 'svc line %04d\r\n' "$i"; done > "$work/expected"
find "$work/store" -name '*.zst' | sort | xargs zstd -dcq > "$work/shipped"
cmp -s "$work/expected" "$work/shipped" || fail "the shipped bytes differ from the log"
echo "wine-service: ok: $(tail -1 "$work/verify.txt")"
