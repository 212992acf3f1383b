#!/usr/bin/env bash
# srun_run.sh NP PROGRAM [ARGS...]: run a test program with NP ranks under `srun --mpi=pmix` on
# the local Slurm cluster (cluster/slurm-local.sh) and fail unless every rank really ran. Like
# tests/mpi_run.sh, each rank of the test main writes a marker file and this script counts them,
# so a launcher that silently starts nothing (or singletons instead of one world) cannot pass.
set -uo pipefail
np="$1"; shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -n "${SLURM_CONF:-}" ]] || eval "$("$here/../../cluster/slurm-local.sh" env)"
export SLURM_CONF
marker_dir="$(mktemp -d "${TMPDIR:-/tmp}/pft-srun-XXXXXX")"
trap 'rm -rf "$marker_dir"' EXIT
export PFT_TEST_MARKER_DIR="$marker_dir"
export PFT_EXPECT_LAUNCHER=srun  # tests/core/rank_env_test.cpp checks the detected launcher
# As launch/pft-mpirun does: CMA single-copy fails inside containers.
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"

# --time bounds a hung step (ctest's timeout would kill srun but leave the step running).
srun --mpi=pmix -n "$np" --time=5 --job-name=pft-ctest-srun --kill-on-bad-exit=1 "$@"
rc=$?
ran=$(find "$marker_dir" -name 'rank-*' | wc -l)
if [[ $rc -eq 0 && $ran -ne $np ]]; then
  echo "srun_run.sh: srun exited 0 but only $ran of $np ranks ran to the end" >&2
  exit 1
fi
exit $rc
