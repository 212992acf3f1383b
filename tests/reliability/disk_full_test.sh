#!/usr/bin/env bash
# disk_full_test.sh PFT: a full disk while pft builds the token stores (data.cache_dir on a 3 MB
# tmpfs, mounted in a private mount namespace) ends the run with exit 3 and a message that says
# "no space left" and what to do, not a crash (HDF5 1.10 used to segfault in its exit handler
# after a failed H5Fclose: exit 139); no temporary file is left and every store already written
# is intact: with space again, the rerun reuses those stores and trains to the end.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-diskfull-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/small"
export PFT_TEST_PFT="$pft" PFT_TEST_WORK="$work" PFT_TEST_CONFIG="$root/configs/quickstart.yaml"
exec unshare --mount --propagation private bash -c '
  set -uo pipefail
  fail() { echo "FAIL: $*" >&2; tail -n 20 "$PFT_TEST_WORK/$1.log" >&2; exit 1; }
  mount -t tmpfs -o size=3m tmpfs "$PFT_TEST_WORK/small" || { echo "FAIL: cannot mount a tmpfs (needs root)"; exit 1; }
  run() {
    OMP_NUM_THREADS=1 "$PFT_TEST_PFT" train "$PFT_TEST_CONFIG" --set "run.dir=$PFT_TEST_WORK/run-$1" \
      --set "data.cache_dir=$PFT_TEST_WORK/small/cache" --set train.steps=2 \
      --set train.warmup_steps=1 --set run.threads=1 > "$PFT_TEST_WORK/$1.log" 2>&1
  }
  run full; rc=$?
  echo "full disk: exit $rc"
  [[ $rc -eq 3 ]] || fail full "exit $rc, want 3"
  grep -q "no space left on the device holding .*HINT: free space" "$PFT_TEST_WORK/full.log" ||
    fail full "no disk-full message"
  left="$(find "$PFT_TEST_WORK/small" -name "*.tmp*")"
  [[ -z "$left" ]] || fail full "temporary files left: $left"
  stores=("$PFT_TEST_WORK"/small/cache/*.h5)
  [[ -e "${stores[0]}" ]] || fail full "no store was completed before the disk filled (make the tmpfs bigger)"
  for s in "${stores[@]}"; do h5ls -r "$s" > /dev/null || fail full "store $s is damaged"; done
  echo "stores written before the disk filled: ${#stores[@]}"
  mount -o remount,size=64m "$PFT_TEST_WORK/small"
  run again; rc=$?
  [[ $rc -eq 0 ]] || fail again "rerun with space: exit $rc"
  for s in "${stores[@]}"; do
    grep -q "cached store $s" "$PFT_TEST_WORK/again.log" || fail again "rerun rebuilt $s instead of reusing it"
  done
  echo PASS
'
