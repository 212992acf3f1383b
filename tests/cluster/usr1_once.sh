#!/usr/bin/env bash
# Stands in for pft in the signal test: on its first run each rank waits for SIGUSR1 and
# answers it as pft does (exit 75); on the next run it exits 0. Markers in $PFT_TEST_MARKER_DIR:
# started-<rank> once the handler is in place, got-usr1-<rank> when the signal arrived.
set -eu
dir="$PFT_TEST_MARKER_DIR"
rank="${SLURM_PROCID:?not under srun}"
if [[ -e "$dir/got-usr1-$rank" ]]; then
  echo "rank $rank: second run, exit 0"
  touch "$dir/done-$rank"
  exit 0
fi
# Short sleeps rather than one long one: the step's signal reaches every process of the rank,
# and whichever order the sleep and the shell get it in, the trap runs within 0.1 s.
trap 'touch "$dir/got-usr1-$rank"; echo "rank $rank: SIGUSR1, exit 75"; exit 75' USR1
touch "$dir/started-$rank"
for ((i = 0; i < 600; ++i)); do sleep 0.1 || true; done
echo "rank $rank: no SIGUSR1 within 60 s" >&2
exit 1
