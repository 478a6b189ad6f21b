#!/usr/bin/env bash
# End-to-end run of the Windows agent under Wine (.ci/run, issue 5):
# custody-agent.exe tails a log on a Windows path; a Windows program renames
# the log while the agent holds it open (rotation), the old writer adds a
# last line to the renamed file, a Windows program starts the new log and
# deletes the rotated one while it is still open; the agent is stopped with
# Ctrl-C; then the Linux custody-verify checks the store and every line is
# found in the payloads exactly once.
#
# Usage: wine-e2e.sh AGENT_EXE LINUX_CUSTODY_VERIFY
# Needs: wine (WINEPREFIX set or default), winepath, python3, zstd; the
# bcryptprimitives shim next to AGENT_EXE (../shared/windows/make-wine-shim).
set -euo pipefail
exe=${1:?usage: wine-e2e.sh AGENT_EXE LINUX_CUSTODY_VERIFY}
verify=${2:?usage: wine-e2e.sh AGENT_EXE LINUX_CUSTODY_VERIFY}
export WINEDEBUG=${WINEDEBUG:--all}

work=$(mktemp -d /tmp/custody-wine-e2e.XXXXXX)
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then kill -KILL "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "wine-e2e: FAILED: $*" >&2
  echo "--- agent log" >&2; cat "$work/agent.log" >&2 || true
  echo "--- status.json" >&2; cat "$work/state/status.json" >&2 || true
  exit 1
}
logs=$work/logs
mkdir -p "$logs"
win() { winepath -w "$1"; }

# Waits (deadline in seconds) until the python expression over the status
# file `s` is true.
wait_status() {
  local what=$1 expr=$2 deadline=$((SECONDS + $3))
  until python3 - "$work/state/status.json" "$expr" <<'EOF' 2>/dev/null
import json, sys
s = json.load(open(sys.argv[1]))
files = [f for src in s["sources"] for f in src["files"]]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
  do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting until $what"
    sleep 0.3
  done
}

# 1. The log as it is when the agent starts (CRLF, as Windows programs write).
for i in $(seq 1 200); do printf 'g0 line %04d\r\n' "$i"; done > "$logs/app.log"
L=$(win "$logs")
wine "$exe" run --store "$(win "$work/store")" --state-dir "$(win "$work/state")" \
  --host-id wine-e2e --source "web=$L\\app.log*" \
  --segment-max-age-ms 200 --digest-interval-ms 1000 --poll-interval-ms 500 \
  --partial-line-wait-ms 500 >"$work/agent.log" 2>&1 &
agent_pid=$!
wait_status "app.log is read to its end" \
  'len(files) == 1 and files[0]["offset"] == files[0]["size"] == 200 * 14' 120

# 2. Rotation by a Windows program while the agent has the file open: a
# sharing violation here would mean the agent blocks rotation.
wine cmd /c move /y "$L\\app.log" "$L\\app.log.1" >/dev/null || fail "Windows could not rename the open log"
[ -f "$logs/app.log.1" ] && [ ! -e "$logs/app.log" ] || fail "the rename did not happen"
# The writer that still holds the old file finishes it; a Windows program
# starts the new one.
printf 'g0 last line after the rename\r\n' >> "$logs/app.log.1"
# (no space before "&": cmd would keep it in the line)
wine cmd /c "echo g1 written by cmd a>> $L\\app.log& echo g1 written by cmd b>> $L\\app.log" >/dev/null \
  || fail "Windows could not write the new log"
for i in $(seq 1 50); do printf 'g1 line %04d\r\n' "$i"; done >> "$logs/app.log"
wait_status "both files are read to their end" \
  'len(files) == 2 and all(f["offset"] == f["size"] > 0 for f in files)' 120
grep -q 'followed a rename' "$work/agent.log" || fail "the agent did not follow the rename"

# 3. Deleting the rotated file while the agent still has it open must be
# allowed (FILE_SHARE_DELETE). Wine unlinks it when the last handle closes,
# so it is checked again after the agent has stopped.
wine cmd /c del /q "$L\\app.log.1" >/dev/null || fail "Windows could not delete the open rotated log"

# 4. Everything shipped, and a digest written after it.
wait_status "the spool is empty" 's["spool"]["segments"] == 0 and s["last_digest_seq"] is not None' 120
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["last_digest_seq"])' "$work/state/status.json")
wait_status "a digest after the last segment" "s['last_digest_seq'] > $digest" 60

# 5. Ctrl-C (Wine turns SIGINT into CTRL_C_EVENT): the graceful shutdown.
kill -INT "$agent_pid"
deadline=$((SECONDS + 60))
while kill -0 "$agent_pid" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the agent did not stop within 60 s of Ctrl-C"
  sleep 0.3
done
wait "$agent_pid" || fail "the agent exited with status $?"
agent_pid=
grep -q 'Ctrl-C received' "$work/agent.log" || fail "the agent did not see Ctrl-C"
grep -q 'custody-agent stopped' "$work/agent.log" || fail "no clean stop in the agent log"
[ ! -e "$logs/app.log.1" ] || fail "the rotated log was not deleted once the agent closed it"

# 6. The Linux verifier accepts the store, and every line is there once.
"$verify" store "$work/store" >"$work/verify.txt" 2>&1 || { cat "$work/verify.txt" >&2; fail "custody-verify store"; }
for i in $(seq 1 200); do printf 'g0 line %04d\r\n' "$i"; done > "$work/expected"
printf 'g0 last line after the rename\r\n' >> "$work/expected"
printf 'g1 written by cmd a\r\ng1 written by cmd b\r\n' >> "$work/expected"
for i in $(seq 1 50); do printf 'g1 line %04d\r\n' "$i"; done >> "$work/expected"
find "$work/store" -name '*.zst' | sort | xargs zstd -dcq > "$work/shipped"
if ! diff <(sort "$work/expected") <(sort "$work/shipped") >/dev/null; then
  diff <(sort "$work/expected") <(sort "$work/shipped") | head -20 >&2
  fail "the shipped lines differ from the lines written (lost or duplicated)"
fi
echo "wine-e2e: ok: $(tail -1 "$work/verify.txt")"
