#!/usr/bin/env bash
# report_browser_test.sh PFT CHROMIUM PYTHON: `pft report` end to end, in a real headless browser.
#   1. a short real `pft train` (tests/report/tiny_tasks.yaml: 2 tasks with held-out templates,
#      two phases, evaluations, checkpoints) on 2 ranks under launch/pft-mpirun, resumed once;
#   2. `pft report RUN_DIR`, then Debian's chromium loads the page (--dump-dom after its scripts
#      ran, --screenshot) and check_report.py checks: no error, every chart has the series and
#      points metrics.jsonl holds, the held-out and worst templates, a screenshot that is not blank;
#   3. a copy of metrics.jsonl with a line cut in two and a record whose string holds
#      "</script><script>": the cut line is skipped and named (stderr and page), the page loads
#      with the same charts and no error (the JSON blob's escaping, Note [report page]);
#   4. exit 2 naming what is missing: a directory without metrics.jsonl (or none at all, or one
#      with a sweep's sweep.jsonl but no sweep.yaml), an empty metrics.jsonl. (The sweep page:
#      sweep_report_browser_test.sh.)
set -euo pipefail
pft="$1"; chromium="$2"; python="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pft-report-XXXXXX")"
trap '[[ -n "${PFT_KEEP_REPORT_TEST:-}" ]] || rm -rf "$tmp"' EXIT
cd "$root"

browse() {  # browse PAGE OUT_PREFIX [shot]: the page's DOM after its scripts ran (and a screenshot)
  # --virtual-time-budget: run the page's scripts to completion before dumping. Running as root
  # needs --no-sandbox; the profile is a fresh folder, so the user's own is never touched.
  local flags=(--headless=new --no-sandbox --disable-gpu --no-first-run --disable-dev-shm-usage
               --user-data-dir="$tmp/profile" --virtual-time-budget=10000 --window-size=1300,1700
               --hide-scrollbars)
  timeout 60 "$chromium" "${flags[@]}" --dump-dom "file://$1" > "$2.html" 2> "$2.browser.log"
  [[ -s "$2.html" ]] || { echo "chromium wrote no DOM:"; cat "$2.browser.log"; exit 1; }
  [[ "${3:-}" == shot ]] || return 0
  timeout 60 "$chromium" "${flags[@]}" --screenshot="$2.png" "file://$1" > /dev/null 2>> "$2.browser.log"
  [[ -s "$2.png" ]] || { echo "chromium wrote no screenshot:"; cat "$2.browser.log"; exit 1; }
}

echo "== 1. pft train: 8 steps, then resumed to 12"
run="$tmp/run"
for steps in 8 12; do
  PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 \
    launch/pft-mpirun -np 2 "$pft" train tests/report/tiny_tasks.yaml --set run.dir="$run" \
    --set train.steps=$steps --set train.resume=auto > "$tmp/train.log" 2>&1 \
    || { cat "$tmp/train.log"; exit 1; }
done
grep -q '"kind":"resume"' "$run/metrics.jsonl" || { echo "the second run did not resume"; exit 1; }

echo "== 2. pft report, chromium"
"$pft" report "$run"
[[ -s "$run/report.html" ]]
browse "$run/report.html" "$tmp/page" shot
"$python" "$here/check_report.py" "$run/metrics.jsonl" "$tmp/page.html" "$tmp/page.png"

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
} > "$cut/metrics.jsonl"
"$pft" report "$cut" -o "$tmp/cut.html" 2> "$tmp/cut.err"
cat "$tmp/cut.err"
grep -q "metrics.jsonl:$cut_at: skipped" "$tmp/cut.err" || { echo "the cut line $cut_at is not named"; exit 1; }
browse "$tmp/cut.html" "$tmp/cut-page"
"$python" "$here/check_report.py" "$cut/metrics.jsonl" "$tmp/cut-page.html" - --skipped "$cut_at"

echo "== 4. errors"
expect_exit2() {  # expect_exit2 WHAT PATTERN ARGS...: pft report exits 2 naming PATTERN
  local what="$1" pattern="$2"; shift 2
  set +e; "$pft" report "$@" > "$tmp/err.out" 2>&1; local rc=$?; set -e
  if [[ $rc -ne 2 ]] || ! grep -q -- "$pattern" "$tmp/err.out"; then
    echo "$what: exit $rc (expected 2 naming '$pattern'):"; cat "$tmp/err.out"; exit 1
  fi
  echo "$what: exit 2: $(cat "$tmp/err.out")"
}
mkdir -p "$tmp/empty_dir"
expect_exit2 "no metrics.jsonl" "has no metrics.jsonl and no sweep.yaml" "$tmp/empty_dir"
expect_exit2 "no such directory" "no such run or sweep directory" "$tmp/absent"
: > "$tmp/empty_dir/metrics.jsonl"
expect_exit2 "empty metrics.jsonl" "no record to report" "$tmp/empty_dir"
mkdir -p "$tmp/sweep" && : > "$tmp/sweep/sweep.jsonl"
expect_exit2 "half a sweep directory" "has sweep.jsonl but no sweep.yaml" "$tmp/sweep"
echo "report_browser_test: OK"
