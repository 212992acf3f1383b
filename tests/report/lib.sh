# Sourced by the report browser tests (they set $pft, $chromium and $tmp):
#   browse PAGE OUT_PREFIX [shot]   OUT_PREFIX.html, the page's DOM after its scripts ran (and
#                                   OUT_PREFIX.png, a screenshot), with Debian's chromium and a
#                                   fresh profile under $tmp
#   expect_exit2 WHAT PATTERN ARGS  `pft report ARGS` exits 2 naming PATTERN
browse() {
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

expect_exit2() {
  local what="$1" pattern="$2"; shift 2
  set +e; "$pft" report "$@" > "$tmp/err.out" 2>&1; local rc=$?; set -e
  if [[ $rc -ne 2 ]] || ! grep -q -- "$pattern" "$tmp/err.out"; then
    echo "$what: exit $rc (expected 2 naming '$pattern'):"; cat "$tmp/err.out"; exit 1
  fi
  echo "$what: exit 2: $(cat "$tmp/err.out")"
}
