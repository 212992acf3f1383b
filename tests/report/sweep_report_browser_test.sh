#!/usr/bin/env bash
# sweep_report_browser_test.sh PFT CHROMIUM PYTHON: `pft report SWEEP_DIR` end to end, in a real
# headless browser (Note [sweep report] in src/report/sweep_report.h).
#   1. a real sweep with the local executor on tests/sweep/tiny.yaml (the sweep tests' base
#      config, ~2 s a trial): train.lr x model.d_model, one learning rate that diverges (a failed
#      trial with a message), two trials at a time;
#   2. `pft sweep status`, `pft report SWEEP_DIR`, then chromium loads the page and
#      check_sweep_report.py checks: no error, nothing loaded from outside, a table row per trial
#      in status's order with its numbers, the best marked, links to each trial's run report that
#      resolve; the objective and loss charts have a series per trial with the points its
#      metrics.jsonl holds; a log-x scatter of train.lr; a screenshot that is not blank;
#   2b. an in-allocation sweep with ASHA (mpi executor, 2 ranks under launch/pft-mpirun): the
#      trial ASHA stopped is drawn as stopped, the rest checked as in 2;
#   3. a copy of the step-1 sweep with a line of one trial's metrics.jsonl cut in two, another
#      trial's metrics.jsonl emptied and a third trial's last event made `stopped` (as ASHA writes
#      it): the page is still written, names the cut line (file:line), says the emptied trial has
#      no run report, draws the stopped trial as stopped;
#   4. exit 2 naming what a run or a sweep directory holds.
set -euo pipefail
pft="$1"; chromium="$2"; python="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pft-sweep-report-XXXXXX")"
trap '[[ -n "${PFT_KEEP_REPORT_TEST:-}" ]] || rm -rf "$tmp"' EXIT
cd "$root"

# browse PAGE OUT_PREFIX [shot], expect_exit2 WHAT PATTERN ARGS... (tests/report/lib.sh)
source "$here/lib.sh"

echo "== 1. pft sweep run: 3 learning rates (one diverges) x 2 widths, local executor"
cat > "$tmp/sweep.yaml" <<EOF
base: $root/tests/sweep/tiny.yaml
parameters:
  train.lr: [1.0e-9, 3.0e-3, 1.0e30]
  model.d_model: [32, 48]
objective: {metric: eval.loss}
executor: {parallel: 2}
EOF
sweep="$tmp/sweep dir"   # a space: the links must be encoded
"$pft" sweep run "$tmp/sweep.yaml" --dir "$sweep" > "$tmp/sweep.log" 2>&1 \
  || { cat "$tmp/sweep.log"; exit 1; }
grep -q '"kind":"failed"' "$sweep/sweep.jsonl" || { echo "no trial failed:"; cat "$tmp/sweep.log"; exit 1; }

echo "== 2. pft sweep status, pft report SWEEP_DIR, chromium"
"$pft" sweep status "$sweep" > "$tmp/status.out"
cat "$tmp/status.out"
"$pft" report "$sweep"
[[ -s "$sweep/report.html" ]]
browse "$sweep/report.html" "$tmp/page" shot
"$python" "$here/check_sweep_report.py" "$sweep" "$tmp/page.html" "$tmp/page.png" "$tmp/status.out" eval.loss
# -o elsewhere: the links lead back into the sweep directory (its space percent-encoded).
mkdir -p "$tmp/elsewhere"
"$pft" report "$sweep" -o "$tmp/elsewhere/sweep.html"
grep -q 'href="../sweep%20dir/trials/t000/report.html"' "$tmp/elsewhere/sweep.html" \
  || { echo "-o elsewhere: no relative, encoded link to t000's report"; exit 1; }
browse "$tmp/elsewhere/sweep.html" "$tmp/elsewhere-page"
"$python" "$here/check_sweep_report.py" "$sweep" "$tmp/elsewhere-page.html" - "$tmp/status.out" eval.loss \
  --page "$tmp/elsewhere/sweep.html"

echo "== 2b. an in-allocation sweep with ASHA (mpi executor, 2 ranks): lr 10 is stopped at step 6"
cat > "$tmp/asha.yaml" <<EOF
base: $root/tests/sweep/tiny.yaml
parameters:
  train.lr: [1.0e-3, 3.0e-3, 10]
  train.micro_batch_size: [2]
objective: {metric: eval.loss}
early_stop: {rule: asha, eta: 2, min_steps: 6}
executor: {kind: mpi, ranks_per_trial: 2}
EOF
asha="$tmp/asha"
PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 \
  launch/pft-mpirun -np 2 "$pft" sweep run "$tmp/asha.yaml" --dir "$asha" > "$tmp/asha.log" 2>&1 \
  || { cat "$tmp/asha.log"; exit 1; }
stopped=$("$python" -c 'import json,sys; print(",".join(sorted({json.loads(l)["trial"] for l in open(sys.argv[1]) if json.loads(l)["kind"] == "stopped"})))' "$asha/sweep.jsonl")
[[ "$stopped" == t002 ]] || { echo "ASHA stopped '$stopped', the setup expects t002:"; cat "$tmp/asha.log"; exit 1; }
"$pft" sweep status "$asha" > "$tmp/asha-status.out"
cat "$tmp/asha-status.out"
"$pft" report "$asha"
browse "$asha/report.html" "$tmp/asha-page"
"$python" "$here/check_sweep_report.py" "$asha" "$tmp/asha-page.html" - "$tmp/asha-status.out" eval.loss \
  --stopped t002
if grep -q 'data-chart="scatter_train.micro_batch_size"' "$tmp/asha-page.html"; then
  echo "a scatter of train.micro_batch_size, which takes one value"; exit 1
fi

echo "== 3. a cut line, a trial with an empty metrics.jsonl, a stopped trial"
copy="$tmp/copy"
cp -r "$sweep" "$copy"
rm "$copy/report.html" "$copy"/trials/*/report.html
m="$copy/trials/t002/metrics.jsonl"
cut_at=$(( $(wc -l < "$m") / 2 ))
{ head -n $((cut_at - 1)) "$m"; sed -n "${cut_at}p" "$m" | head -c 30; echo; tail -n +$((cut_at + 1)) "$m"; } > "$m.new"
mv "$m.new" "$m"
: > "$copy/trials/t003/metrics.jsonl"
now=$("$python" -c 'import time; print(time.time())')
echo "{\"kind\":\"stopped\",\"trial\":\"t001\",\"time\":$now,\"step\":12,\"objective\":null}" >> "$copy/sweep.jsonl"
"$pft" sweep status "$copy" > "$tmp/copy-status.out"
"$pft" report "$copy" 2> "$tmp/copy.err"
cat "$tmp/copy.err"
grep -q "trials/t002/metrics.jsonl:$cut_at: skipped" "$tmp/copy.err" || { echo "the cut line is not named"; exit 1; }
grep -q "trial t003: no run report" "$tmp/copy.err" || { echo "t003's missing report is not named"; exit 1; }
browse "$copy/report.html" "$tmp/copy-page"
"$python" "$here/check_sweep_report.py" "$copy" "$tmp/copy-page.html" - "$tmp/copy-status.out" eval.loss \
  --unreadable "t002:$cut_at" --no-report t003 --stopped t001

echo "== 4. errors"
mkdir -p "$tmp/neither"
expect_exit2 "neither kind" "$tmp/neither has no metrics.jsonl and no sweep.yaml.*sweep directory.*holds sweep.yaml and sweep.jsonl" "$tmp/neither"
mkdir -p "$tmp/half" && cp "$sweep/sweep.jsonl" "$tmp/half/"
expect_exit2 "sweep.jsonl alone" "has sweep.jsonl but no sweep.yaml" "$tmp/half"
echo "not a sweep" > "$tmp/half/sweep.yaml"
expect_exit2 "a sweep.yaml pft did not write" "sweep.yaml:1: not a sweep copy" "$tmp/half"
echo "sweep_report_browser_test: OK"
