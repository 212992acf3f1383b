#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the 2-rank CPU multi-task prompt
# fine-tuning demo on the bundled data (configs/multitask.yaml: a temperature phase, then an
# adaptive one), printing progress and the per-task, per-template tables. Extra arguments go
# to `pft train` (e.g. --set train.steps=50).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
"$here/install-deps.sh"
# Only the pft binary: the test binaries are cluster/test.sh's job.
"$here/build.sh" cpu --target pft >/dev/null
cd "$root"
ranks="${PFT_DEMO_RANKS:-2}"
exec "$root/launch/pft-mpirun" -np "$ranks" --bind-to none \
  "$root/build/cpu/bin/pft" train configs/multitask.yaml --set run.threads=1 "$@"
