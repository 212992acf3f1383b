#!/usr/bin/env bash
# secrets_test.sh PFT: secrets in the environment never reach what pft writes, and what it writes
# has sane permissions (docs/reliability.md, "Secrets and files").
#   canary:  a 2-rank `pft train` (pft-mpirun, loopback) of the quickstart tasks on a shrunk model,
#            with a step-0 and a later evaluation and two checkpoints, runs with a random canary in
#            AWS_SECRET_ACCESS_KEY, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, WANDB_API_KEY, PFT_SECRET
#            and NOBODY_READS_THIS (passed to both ranks), then `pft ckpt ls` and `pft ckpt
#            inspect` run with them. The canary must appear nowhere: not in the run directory
#            (config.resolved.yaml, metrics.jsonl, run.lock, checkpoints, `latest`), not in the
#            token store cache, not in any stdout or stderr; every HDF5 file is scanned as bytes,
#            with `strings` and through `h5dump`. Control: each scanner does find the run's random
#            directory name (recorded in config.resolved.yaml and in each checkpoint's config).
#   latest:  a `latest` that is a link out of the run directory: `pft ckpt ls` exits 2 naming it.
#   modes:   that run (umask 022) leaves files 0644 and directories 0755; single-process runs
#            under umask 077 leave 0600 / 0700, and under umask 000 nothing writable by others.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-secrets-XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
tag="$(basename "$work")"  # the control: pft records the run dir's path

canary="pftcanary$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export AWS_SECRET_ACCESS_KEY="aws/$canary" HF_TOKEN="hf_$canary" \
  HUGGING_FACE_HUB_TOKEN="hf_$canary" WANDB_API_KEY="wandb-$canary" PFT_SECRET="pft-$canary" \
  NOBODY_READS_THIS="x-$canary"
secrets=(AWS_SECRET_ACCESS_KEY HF_TOKEN HUGGING_FACE_HUB_TOKEN WANDB_API_KEY PFT_SECRET NOBODY_READS_THIS)
pass_env=()
for v in "${secrets[@]}"; do pass_env+=(-x "$v"); done

# The quickstart's tasks, tokenizer and data pipeline on a model small enough to take seconds.
args() {
  echo --set "run.dir=$work/$1" --set "data.cache_dir=$work/$1-cache" --set run.threads=1 \
    --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2 --set model.max_seq_len=64 \
    --set data.seq_len=64 --set train.steps=4 --set train.warmup_steps=1 \
    --set eval.every_steps=2 --set eval.max_batches=1 --set checkpoint.every_steps=2
}
mpi() {
  PFT_MPIRUN_LOOPBACK=1 PFT_OVERSUBSCRIBE=1 "$root/launch/pft-mpirun" -np 2 "${pass_env[@]}" "$@"
}

# ---- canary -------------------------------------------------------------------------------------
umask 022
mpi "$pft" train "$root/configs/quickstart.yaml" $(args run) > "$work/train.out" 2> "$work/train.err" ||
  { tail -n 30 "$work/train.err" "$work/train.out"; fail "the training run failed"; }
ckpts=("$work"/run/checkpoints/step_*.h5)
[[ ${#ckpts[@]} -eq 2 ]] || fail "want 2 checkpoints, found: ${ckpts[*]}"
grep -q '"kind":"eval"' "$work/run/metrics.jsonl" || fail "no evaluation in metrics.jsonl"
stores=("$work"/run-cache/*.h5)
[[ -e "${stores[0]}" ]] || fail "no token store in the cache"
"$pft" ckpt ls "$work/run" > "$work/ls.out" 2> "$work/ls.err" || fail "pft ckpt ls failed"
"$pft" ckpt inspect "${ckpts[1]}" > "$work/inspect.out" 2> "$work/inspect.err" ||
  fail "pft ckpt inspect failed"
echo "ran with the canary in ${secrets[*]}: ${#ckpts[@]} checkpoints, ${#stores[@]} token stores"

# Bytes of everything written, outputs included.
hits="$(grep -rlaF "$canary" "$work" 2> /dev/null || true)"
[[ -z "$hits" ]] || fail "the canary leaked into: $hits"
grep -qF "$tag" "$work/run/config.resolved.yaml" || fail "control: run dir not in config.resolved.yaml"
# (Through files, not pipes: `grep -q` would end a pipe early, and pipefail would hide a hit.)
for f in "${ckpts[@]}" "${stores[@]}"; do
  h5dump "$f" > "$work/scan.dump" 2>&1 || fail "h5dump $f failed"
  strings -a "$f" > "$work/scan.strings"
  ! grep -qF "$canary" "$work/scan.dump" || fail "the canary leaked into $f (h5dump)"
  ! grep -qF "$canary" "$work/scan.strings" || fail "the canary leaked into $f (strings)"
  if [[ "$f" == */checkpoints/* ]]; then  # control: the scanners see the strings of a checkpoint
    grep -qF "$tag" "$work/scan.dump" && grep -qF "$tag" "$work/scan.strings" ||
      fail "control: the run dir's name is not found in $f by h5dump and strings"
  fi
done
rm -f "$work/scan.dump" "$work/scan.strings"
echo "canary: found nowhere in $(find "$work" -type f | wc -l) files (bytes, strings, h5dump)"

# ---- a `latest` that is a link out of the run directory is refused ----------------------------
mv "$work/run/checkpoints/latest" "$work/elsewhere-latest"
ln -s "$work/elsewhere-latest" "$work/run/checkpoints/latest"
out="$("$pft" ckpt ls "$work/run" 2>&1)"
rc=$?
[[ $rc -eq 2 && "$out" == *"checkpoints/latest is a symbolic link (to '$work/elsewhere-latest')"* ]] ||
  fail "pft ckpt ls with a linked latest: exit $rc, '$out' (want exit 2 naming the link)"
echo "latest as a link: pft ckpt ls exits 2: ${out:0:120}..."

# ---- modes ----------------------------------------------------------------------------------------
# modes DIR FILE_MODE DIR_MODE: every file and directory under DIR has exactly these.
modes() {
  local bad
  bad="$(find "$1" \( -type f ! -perm "$2" \) -o \( -type d ! -perm "$3" \) | head -5)"
  [[ -z "$bad" ]] || fail "under $1 (want files $2, dirs $3): $(stat -c '%a %n' $bad)"
}
modes "$work/run" 644 755
modes "$work/run-cache" 644 755
single() {
  OMP_NUM_THREADS=1 "$pft" train "$root/configs/quickstart.yaml" $(args "$1") \
    --set train.steps=2 --set checkpoint.every_steps=1 --set eval.every_steps=0 \
    > "$work/$1.out" 2>&1 || { tail -n 20 "$work/$1.out"; fail "$1: the run failed"; }
}
(umask 077 && single private) || exit 1
modes "$work/private" 600 700
modes "$work/private-cache" 600 700
(umask 000 && single open) || exit 1
ww="$(find "$work/open" "$work/open-cache" -perm -o+w)"
[[ -z "$ww" ]] || fail "umask 000: world-writable: $ww"
modes "$work/open" 664 775
echo "modes: umask 022 -> 644/755, 077 -> 600/700, 000 -> 664/775 (never o+w)"
echo PASS
