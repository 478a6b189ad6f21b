#!/usr/bin/env bash
# The long mode of the fault campaign (tests/tests/fault_campaign.rs): four
# sources sharing one directory on a small loop-mounted ext4, every rotation
# style mixed, the agent as nobody, kill -9 at random moments, a file
# unreadable across restarts; then every line counted per stream (once, in
# its own stream, byte-exact) and custody-verify. CI runs 60 cycles (the
# default); this runs 300 (or $1).
#
#   bench/fault_campaign.sh            # 300 cycles, a fresh seed (printed)
#   bench/fault_campaign.sh 500        # more cycles
#   CUSTODY_TEST_SEED=123 bench/fault_campaign.sh   # replay a run
#
# Needs root (mount -o loop, setpriv --reuid nobody), zstd and gzip. The
# output, with the per-stream table, is also written to
# bench/out/fault_campaign-<UTC time>.log. Exit status: the test's.
set -euo pipefail
cd "$(dirname "$0")/.."

cycles="${1:-300}"
case "$cycles" in
  ''|*[!0-9]*) echo "fault_campaign.sh: cycles must be a number, got '$cycles'" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "fault_campaign.sh: run as root (it loop-mounts an ext4 and drops the agent to nobody)" >&2
  exit 2
fi
mkdir -p bench/out
log="bench/out/fault_campaign-$(date -u +%Y%m%dT%H%M%SZ).log"
start=$SECONDS
set +e
CUSTODY_CAMPAIGN_CYCLES="$cycles" cargo test --locked -p custody-tests --test fault_campaign -- \
  four_sources_one_directory_kill9_rotations_unreadable --exact --test-threads=1 --nocapture 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "fault_campaign.sh: $cycles cycles, $((SECONDS - start)) s, exit $rc; log: $log"
exit "$rc"
