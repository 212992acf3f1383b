#!/usr/bin/env bash
# slurm_sweep_test.sh PFT_BIN: `pft sweep run` with the slurm executor on the local Slurm cluster
# (cluster/slurm-local.sh): a 2-trial sweep becomes one job array (sweep.sbatch, --array=0-1%2),
# each array task runs one trial (`pft sweep trial`) in its own run dir; `pft sweep status`
# collects the results while it runs and after; the ranking and objectives equal those of the
# same sweep run by the local executor; a resubmission of the finished sweep submits nothing.
set -uo pipefail
pft="$(realpath "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[[ -n "${SLURM_CONF:-}" ]] || eval "$("$root/cluster/slurm-local.sh" env)"
export SLURM_CONF

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pft-sweep-slurm-XXXXXX")"
job=""
cleanup() {
  [[ -n "$job" ]] && scancel "$job" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "slurm_sweep_test.sh: FAILED: $*" >&2
  for f in "$tmp"/out/slurm/*.out "$tmp"/out/trials/*/sweep.log; do
    [[ -f "$f" ]] && { echo "---- $f ----" >&2; tail -n 20 "$f" >&2; }
  done
  [[ -f "$tmp/out/sweep.jsonl" ]] && cat "$tmp/out/sweep.jsonl" >&2
  exit 1
}

cat > "$tmp/sweep.yaml" << YAML
base: $here/tiny.yaml
parameters:
  train.lr: [1.0e-9, 3.0e-3]
objective: {metric: eval.loss}
executor:
  kind: slurm
  parallel: 2
  sbatch_args: [--time=5, --job-name=pft-ctest-sweep-$$]
YAML

"$pft" sweep run "$tmp/sweep.yaml" --dir "$tmp/out" > "$tmp/submit.out" 2>&1 || fail "sweep run exited $?: $(cat "$tmp/submit.out")"
job="$(grep -E '^[0-9]+$' "$tmp/submit.out" | tail -n 1)"
[[ -n "$job" ]] || fail "no job id printed: $(cat "$tmp/submit.out")"
grep -q -- '--array=0-1%2' "$tmp/out/sweep.sbatch" || fail "sweep.sbatch: $(cat "$tmp/out/sweep.sbatch")"
grep -q "\"kind\":\"submitted\".*\"job\":\"$job\"" "$tmp/out/sweep.jsonl" || fail "no submitted event"

# Poll the status until the array is done (every trial finished or failed, the job gone).
done=0
for _ in $(seq 1 120); do
  "$pft" sweep status "$tmp/out" > "$tmp/status.out" 2>&1 || fail "sweep status exited $?: $(cat "$tmp/status.out")"
  if ! grep -qE ' (running|pending|interrupted)$' "$tmp/status.out" &&
    [[ -z "$(squeue -h -j "$job" 2> /dev/null)" ]]; then
    done=1
    break
  fi
  sleep 1
done
[[ $done == 1 ]] || fail "the array did not finish in 120 s: $(cat "$tmp/status.out"); $(squeue)"
cat "$tmp/status.out"
# The trial that can learn first, both finished, 12 steps each.
grep -qE '^ +1  t001 +3\.0e-3 +[0-9.]+ +12  finished$' "$tmp/status.out" || fail "rank 1: $(cat "$tmp/status.out")"
grep -qE '^ +2  t000 +1\.0e-9 +[0-9.]+ +12  finished$' "$tmp/status.out" || fail "rank 2: $(cat "$tmp/status.out")"
for i in 0 1; do
  [[ -f "$tmp/out/slurm/${job}_$i.out" ]] || fail "no log of array task $i"
  grep -q '"kind":"end"' "$tmp/out/trials/t00$i/metrics.jsonl" || fail "t00$i has no end record"
done
grep -q 'best trial t001' "$tmp/out/best.yaml" || fail "best.yaml: $(head -n 2 "$tmp/out/best.yaml")"

# The same trials run by the local executor reach the same objectives.
objectives() { grep '"kind":"finished"' "$1" | sed -E 's/.*"trial":"(t[0-9]+)".*"objective":([^,]+),.*/\1 \2/' | sort; }
"$pft" sweep run "$tmp/sweep.yaml" --dir "$tmp/local" --executor local > "$tmp/local.out" 2>&1 || fail "local sweep: $(cat "$tmp/local.out")"
[[ "$(objectives "$tmp/out/sweep.jsonl")" == "$(objectives "$tmp/local/sweep.jsonl")" ]] ||
  fail "slurm and local objectives differ: $(objectives "$tmp/out/sweep.jsonl") vs $(objectives "$tmp/local/sweep.jsonl")"

# Nothing is left to run: a resubmission submits nothing.
"$pft" sweep run "$tmp/sweep.yaml" --dir "$tmp/out" > "$tmp/again.out" 2>&1 || fail "rerun exited $?"
grep -q 'nothing to submit' "$tmp/again.out" || fail "rerun: $(cat "$tmp/again.out")"
[[ $(grep -c '"kind":"submitted"' "$tmp/out/sweep.jsonl") == 1 ]] || fail "submitted twice"
echo "slurm_sweep_test.sh: OK (job $job)"
