#!/usr/bin/env bash
# report_browser_test.sh PFT CHROMIUM PYTHON: `pft report` end to end, in a real headless browser.
#   1. a short real `pft train` (tests/report/tiny_tasks.yaml: 2 tasks with held-out templates,
#      two phases, evaluations, checkpoints) on 2 ranks under launch/pft-mpirun, a resume that
#      fails (its `start` record must not hide the run), resumed to 12, resumed again with nothing
#      to do (trace.json kept), all with run.trace (the page's timeline: trace.json's spans);
#   2. `pft report RUN_DIR`, then Debian's chromium loads the page (--dump-dom after its scripts
#      ran, --screenshot) and check_report.py checks: no error, every chart has the series and
#      points metrics.jsonl holds, the held-out and worst templates, a screenshot that is not blank;
#   3. a copy of metrics.jsonl with a line cut in two and a record whose string holds
#      "</script><script>": the cut line is skipped and named (stderr and page), the page loads
#      with the same charts and no error (the JSON blob's escaping, Note [report page]); its last
#      train record repeated with an "mfu" (as on a GPU) adds the MFU chart;
#   4. exit 2 naming what is missing: a directory without metrics.jsonl (or none at all, or one
#      with a sweep's sweep.jsonl but no sweep.yaml), an empty metrics.jsonl, a bad --trace-steps.
#      (The sweep page: sweep_report_browser_test.sh.)
set -euo pipefail
pft="$1"; chromium="$2"; python="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pft-report-XXXXXX")"
trap '[[ -n "${PFT_KEEP_REPORT_TEST:-}" ]] || rm -rf "$tmp"' EXIT
cd "$root"

# browse PAGE OUT_PREFIX [shot], expect_exit2 WHAT PATTERN ARGS... (tests/report/lib.sh)
source "$here/lib.sh"

echo "== 1. pft train: 8 steps, a resume that fails, then resumed to 12"
run="$tmp/run"
train() {  # train STEPS [--set ...]: pft train of the tiny config on 2 ranks, traced
  local steps="$1"; shift
  PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 \
    launch/pft-mpirun -np 2 "$pft" train tests/report/tiny_tasks.yaml --set run.dir="$run" \
    --set train.steps="$steps" --set train.resume=auto --set run.trace=true "$@"
}
train 8 > "$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
# A resume that fails (another model: exit 2) leaves a `start` record and no step; the page must
# still show all 12 steps (Note [report runs]), which check_report.py counts.
set +e
train 12 --set model.n_layers=2 > "$tmp/bad.log" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "a resume with another model exited $rc, not 2"; cat "$tmp/bad.log"; exit 1; }
train 12 > "$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
grep -q '"kind":"resume"' "$run/metrics.jsonl" || { echo "the last run did not resume"; exit 1; }
"$python" - "$run/metrics.jsonl" <<'PY' || { echo "no start record without a step (the failed resume's)"; exit 1; }
import json, sys
kinds = [json.loads(l)["kind"] for l in open(sys.argv[1]) if l.strip()]
starts = [i for i, k in enumerate(kinds) if k == "start"]
sys.exit(0 if any(i + 1 < len(kinds) and kinds[i + 1] == "start" for i in starts) else 1)
PY
# Resumed again with nothing left to do: no step is traced, so trace.json (steps 9-12) is kept.
train 12 > "$tmp/again.log" 2>&1 || { cat "$tmp/again.log"; exit 1; }
grep -q "trace: no step of this run was traced" "$tmp/again.log" ||
  { echo "a run without a traced step did not say so"; cat "$tmp/again.log"; exit 1; }

echo "== 2. pft report, chromium"
"$pft" report "$run"
[[ -s "$run/report.html" ]]
browse "$run/report.html" "$tmp/page" shot
"$python" "$here/check_report.py" "$run/metrics.jsonl" "$tmp/page.html" "$tmp/page.png" \
  --trace "$run/trace.json"
# The resumed run traced steps 9-12; by default the timeline shows 9-11 (not the final step).
grep -q 'data-from-step="9"' "$tmp/page.html" && grep -q 'data-to-step="11"' "$tmp/page.html" ||
  { echo "the timeline's window is not steps 9-11"; exit 1; }
"$pft" report "$run" -o "$tmp/step12.html" --trace-steps 12:12
browse "$tmp/step12.html" "$tmp/step12-page"
"$python" "$here/check_report.py" "$run/metrics.jsonl" "$tmp/step12-page.html" - --trace "$run/trace.json"
grep -q 'data-from-step="12"' "$tmp/step12-page.html" || { echo "--trace-steps 12:12 not shown"; exit 1; }

echo "== 3. a cut line and '</script>' in a string"
cut="$tmp/cut"
mkdir -p "$cut"
lines=$(wc -l < "$run/metrics.jsonl")
cut_at=$((lines / 2))
{
  head -n $((cut_at - 1)) "$run/metrics.jsonl"
  sed -n "${cut_at}p" "$run/metrics.jsonl" | head -c 40; echo   # a line cut by a kill
  tail -n +$((cut_at + 1)) "$run/metrics.jsonl"
  echo '{"kind":"stopped","step":12,"reason":"</script><script>window.pftRecordError(\"escaped\")</script><!--"}'
  # The last step again as a GPU run writes it (with "mfu"): the page then has an MFU chart.
  grep '"kind":"train"' "$run/metrics.jsonl" | tail -n 1 | sed 's/}$/,"mfu":0.41}/'
} > "$cut/metrics.jsonl"
"$pft" report "$cut" -o "$tmp/cut.html" 2> "$tmp/cut.err"
cat "$tmp/cut.err"
grep -q "metrics.jsonl:$cut_at: skipped" "$tmp/cut.err" || { echo "the cut line $cut_at is not named"; exit 1; }
browse "$tmp/cut.html" "$tmp/cut-page"
"$python" "$here/check_report.py" "$cut/metrics.jsonl" "$tmp/cut-page.html" - --skipped "$cut_at"
grep -q 'data-chart="mfu"' "$tmp/cut-page.html" || { echo "no MFU chart for a record with mfu"; exit 1; }

echo "== 4. errors"
mkdir -p "$tmp/empty_dir"
expect_exit2 "no metrics.jsonl" "has no metrics.jsonl and no sweep.yaml" "$tmp/empty_dir"
expect_exit2 "no such directory" "no such run or sweep directory" "$tmp/absent"
: > "$tmp/empty_dir/metrics.jsonl"
expect_exit2 "empty metrics.jsonl" "no record to report" "$tmp/empty_dir"
mkdir -p "$tmp/sweep" && : > "$tmp/sweep/sweep.jsonl"
expect_exit2 "half a sweep directory" "has sweep.jsonl but no sweep.yaml" "$tmp/sweep"
expect_exit2 "a bad --trace-steps" "expected A:B" "$run" -o "$tmp/x.html" --trace-steps 5-7
expect_exit2 "--trace-steps without a trace" "has no trace.json" "$cut" -o "$tmp/x.html" --trace-steps 1:2
echo "report_browser_test: OK"
