#!/usr/bin/env bash
# Stands in for pft in the requeue test: each rank exits 75 ("checkpointed, requeue me") the
# first time it runs and 0 the next, remembering the first run by a marker file per rank in
# $PFT_TEST_MARKER_DIR. Its arguments (the pft command line) are ignored.
set -eu
marker="$PFT_TEST_MARKER_DIR/ran-once-${SLURM_PROCID:?not under srun}"
if [[ ! -e "$marker" ]]; then
  touch "$marker"
  echo "rank $SLURM_PROCID: first run, exit 75"
  exit 75
fi
echo "rank $SLURM_PROCID: second run, exit 0"
touch "$PFT_TEST_MARKER_DIR/done-$SLURM_PROCID"
