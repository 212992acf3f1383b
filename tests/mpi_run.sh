#!/usr/bin/env bash
# mpi_run.sh NP PROGRAM [ARGS...]: run a test program under mpirun with NP ranks and fail unless
# every rank really ran. Open MPI may exit 0 when it refuses to start (as root without the
# variables, or too few slots), so each rank of a test main writes a marker file and this script
# counts them.
set -uo pipefail
np="$1"; shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
marker_dir="$(mktemp -d "${TMPDIR:-/tmp}/pft-mpi-XXXXXX")"
trap 'rm -rf "$marker_dir"' EXIT
export PFT_TEST_MARKER_DIR="$marker_dir"

PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 \
  "$here/../launch/pft-mpirun" -np "$np" -x PFT_TEST_MARKER_DIR "$@"
rc=$?
ran=$(find "$marker_dir" -name 'rank-*' | wc -l)
if [[ $rc -eq 0 && $ran -ne $np ]]; then
  echo "mpi_run.sh: mpirun exited 0 but only $ran of $np ranks ran to the end" >&2
  exit 1
fi
exit $rc
