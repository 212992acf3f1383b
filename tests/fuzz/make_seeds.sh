#!/usr/bin/env bash
# Rewrites the binary seeds of tests/fuzz/corpus/ (checkpoint, token_store, gguf, safetensors)
# with pft's own writers (tests/fuzz/make_seeds.cpp), after building the fuzz preset's
# fuzz_make_seeds. Text seeds are kept by hand.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/cluster/build.sh" fuzz --target fuzz_make_seeds >/dev/null
ASAN_OPTIONS=detect_leaks=0 "$root/build/fuzz/bin/fuzz_make_seeds" "$root/tests/fuzz/corpus"
ls -l "$root"/tests/fuzz/corpus/{checkpoint,token_store,gguf,safetensors}
