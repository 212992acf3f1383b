#!/usr/bin/env bash
# binary_ab.sh: two pft binaries side by side on the same training run (a refactor's cost, or a
# commit against the one before it), alternating A, B, A, B, ... so drift in the machine's speed
# hits both; prints each run's `done:` line and one RESULT line with the mean tokens/s.
#
#   tests/bench/binary_ab.sh OLD_PFT NEW_PFT [rounds=3] [extra pft train args...]
#
# The run: configs/quickstart.yaml, 200 steps, 2 ranks (launch/pft-mpirun), evaluation and
# checkpoints off, so the figure is the training step. Both must reach the same parameter hash
# when the change is meant to be behaviour-neutral; the script says when they do not.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
a="${1:?usage: binary_ab.sh OLD_PFT NEW_PFT [rounds] [args...]}"
b="${2:?usage: binary_ab.sh OLD_PFT NEW_PFT [rounds] [args...]}"
rounds="${3:-3}"
shift $(( $# < 3 ? $# : 3 ))
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
declare -A rates hashes
for ((i = 1; i <= rounds; ++i)); do
  for side in a b; do
    bin=$a; [[ $side == b ]] && bin=$b
    line="$(launch/pft-mpirun -np 2 --bind-to none "$bin" train configs/quickstart.yaml \
      --set run.threads=1 --set eval.every_steps=0 --set eval.max_batches=1 \
      --set checkpoint.every_steps=0 --set run.dir="$work/$side$i" "$@" 2>&1 | grep 'done:')"
    echo "$side $i: ${line#*info }"
    rate="$(sed -n 's/.* | \([0-9.]*\)k tok\/s .*/\1/p' <<< "$line")"
    rates[$side]="${rates[$side]:-} $rate"
    hashes[$side]="$(sed -n 's/.*parameters \(xxh3-64:[0-9a-f]*\).*/\1/p' <<< "$line")"
  done
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; ++i) s += $i; printf "%.2f", s / NF }' <<< "$1"; }
ma="$(mean "${rates[a]}")" mb="$(mean "${rates[b]}")"
[[ "${hashes[a]}" == "${hashes[b]}" ]] || echo "binary_ab: the parameter hashes differ: ${hashes[a]} vs ${hashes[b]}"
echo "RESULT name=binary_ab pft=${mb} baseline=${ma} unit=ktok/s ratio=$(awk -v x="$mb" -v y="$ma" 'BEGIN { printf "%.3f", x / y }')"
