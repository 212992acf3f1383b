#!/usr/bin/env bash
# soak.sh: a long training run watched for leaks (issue 18). Not a benchmark of speed: it asks
# whether anything grows with the number of steps that should not.
#
#   tests/reliability/soak.sh [--steps N] [--every K] [--samples M] [--np R] [--dir DIR] [--short]
#   tests/reliability/soak.sh --dir DIR --steps N --report     (the verdicts of a kept run again)
#
# Trains a tiny GPT-2 (quickstart tasks, d_model 64, 2 layers, seq 64, 8 sequences per step) for
# N steps (default 5000) on R ranks (default 2), an asynchronous checkpoint every K steps (default
# 5), keep_last 2. While it runs, about every 0.2 s it reads, for every rank, the open file
# descriptors (/proc/PID/fd) and the resident memory (VmRSS), and the run directory's disk use
# without its two append-only logs (checkpoints, latest, config, lock). The readings fall into M
# buckets of steps (default 40); a sample is the bucket's minimum, since a save in flight only
# adds for a moment (its snapshot, its temporary file, the file HDF5 holds open). Per checkpoint,
# metrics.jsonl gives its file size, write time and training stall. The logs (metrics.jsonl,
# plan.jsonl) grow by design -- one line per step -- and are reported as bytes per step.
#
# Output: the table of samples, then one line per series: its start and end, the least-squares
# slope over the second half of the run (per 1000 steps), the median pairwise (Theil-Sen) slope,
# the threshold, and the verdict: `GROWING` when both slopes exceed the threshold (a leak raises
# every part of a series; a one-time step of the allocator only the pairs across it), else
# `flat`. Exit 1 if any series grows (0 otherwise; 2 for bad usage or a failed run).
# Thresholds (per 1000 steps; why: docs/reliability.md, "Soak"):
#   fds          0.25 per checkpoint (a leak of one descriptor per checkpoint is 4 times that)
#   rss          SOAK_RSS_KB_PER_KSTEP (default 1024 KB, i.e. 1 KB per step)
#   state disk   SOAK_DISK_KB_PER_KSTEP (default 64 KB)
#   ckpt bytes   SOAK_CKPT_BYTES_PER_KSTEP (default 16384 bytes per checkpoint file)
#   ckpt times   a growth over the second half of half their median or 10 ms (write_s, stall_s);
#                reported but never failing the --short run (a shared machine's noise is no leak)
# --short: 2000 steps, 30 buckets, the checks the default test run asserts (ctest -L reliability).
# Its second half starts at step 1000, once the checkpoints' metrics history (the last 256
# records) is full (before that every checkpoint is larger than the one before, by design) and
# rank 0's allocator has warmed up (its resident memory rises until about step 1000).
#
# Environment: PFT_BIN (default build/cpu/bin/pft), SOAK_NICE (a nice level for the run, e.g.
# 10), the thresholds above. Results: docs/reliability.md, section "Soak".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
steps=5000 every=5 samples=40 np=2 dir="" short=0 report=0
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --every) every="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --np) np="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --short) short=1; steps=2000; samples=30; shift ;;
    --report) report=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "soak.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
pft="${PFT_BIN:-$root/build/cpu/bin/pft}"
[[ -x "$pft" ]] || { echo "soak.sh: $pft not found; build it (cluster/build.sh) or set PFT_BIN" >&2; exit 2; }
command -v python3 > /dev/null || { echo "soak.sh: needs python3 (standard library only)" >&2; exit 2; }
for v in "$steps" "$every" "$samples" "$np"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: '$v' is not a positive integer" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/pft-soak-XXXXXX")"
keep_dir=1
if [[ -z "$dir" ]]; then dir="$work/run"; keep_dir=0; fi
launcher=""
cleanup() {
  [[ -n "$launcher" ]] && kill -0 "$launcher" 2> /dev/null && kill -TERM -- "-$launcher" 2> /dev/null
  if ((keep_dir)); then echo "soak.sh: run directory kept: $dir"; fi
  rm -rf "$work"
}
trap cleanup EXIT
readings="$work/readings.tsv"
((keep_dir)) && readings="$dir.readings.tsv"  # kept beside a --dir run
if ((report)); then  # --report: the table and verdicts of a kept run again (e.g. new thresholds)
  [[ -f "$readings" && -f "$dir/metrics.jsonl" ]] ||
    { echo "soak.sh: --report needs --dir of a kept run ($readings)" >&2; exit 2; }
  keep_dir=0
else
rm -rf "$dir"

# The run, in a process group of its own (so the cleanup can end it, and nothing else).
nice_cmd=()
[[ -n "${SOAK_NICE:-}" ]] && nice_cmd=(nice -n "$SOAK_NICE")
setsid "${nice_cmd[@]}" env PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 \
  "$root/launch/pft-mpirun" -np "$np" "$pft" train "$root/configs/quickstart.yaml" \
  --set model.d_model=64 --set model.n_layers=2 --set model.n_heads=4 --set data.seq_len=64 \
  --set train.steps="$steps" --set train.warmup_steps=2 --set train.global_batch_size=8 \
  --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=100 \
  --set eval.every_steps=0 --set eval.max_batches=1 \
  --set checkpoint.every_steps="$every" --set checkpoint.async=true \
  --set checkpoint.keep_last=2 --set run.dir="$dir" > "$work/train.log" 2>&1 &
launcher=$!
started=$(date +%s)

# The ranks: processes named pft whose command line holds this run's directory, by world rank.
declare -A rank_pid=()
find_ranks() {
  rank_pid=()
  local p cmd rank
  for p in /proc/[0-9]*; do
    [[ "$(cat "$p/comm" 2> /dev/null)" == pft ]] || continue
    cmd="$(tr '\0' ' ' < "$p/cmdline" 2> /dev/null)" || continue
    [[ "$cmd" == *"run.dir=$dir "* || "$cmd" == *"run.dir=$dir" ]] || continue
    rank="$(tr '\0' '\n' < "$p/environ" 2> /dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')"
    [[ -n "$rank" ]] && rank_pid[$rank]="${p#/proc/}"
  done
}

# The last step in metrics.jsonl (its last "train" record).
last_step() {
  local line s=0
  while IFS= read -r line; do
    [[ "$line" =~ \"kind\":\"train\",\"step\":([0-9]+) ]] && s="${BASH_REMATCH[1]}"
  done < <(tail -n 20 "$dir/metrics.jsonl" 2> /dev/null)
  echo "$s"
}

: > "$readings"
while kill -0 "$launcher" 2> /dev/null; do
  sleep 0.2
  step="$(last_step)"
  ((step > 0)) || continue
  if ((${#rank_pid[@]} < np)); then find_ranks; fi
  for r in "${!rank_pid[@]}"; do
    p="${rank_pid[$r]}"
    fds=(/proc/"$p"/fd/*)
    [[ -e "${fds[0]}" ]] || { unset "rank_pid[$r]"; continue; }
    rss=""
    while read -r key value _; do
      [[ "$key" == VmRSS: ]] && rss="$value"
    done < "/proc/$p/status" 2> /dev/null
    [[ -n "$rss" ]] && printf '%s\tfds.rank%s\t%s\n%s\trss_kb.rank%s\t%s\n' \
      "$step" "$r" "${#fds[@]}" "$step" "$r" "$rss" >> "$readings"
  done
  state="$(du -sb --exclude=metrics.jsonl --exclude=plan.jsonl "$dir" 2> /dev/null | cut -f1)"
  [[ -n "$state" ]] && printf '%s\tstate_disk_bytes\t%s\n' "$step" "$state" >> "$readings"
done
wait "$launcher"
rc=$?
launcher=""
elapsed=$(($(date +%s) - started))
if ((rc != 0)); then
  echo "soak.sh: the run failed (exit $rc); its last lines:" >&2
  tail -n 30 "$work/train.log" >&2
  exit 2
fi
echo "soak.sh: $steps steps on $np ranks, a checkpoint every $every, in ${elapsed} s"
fi

python3 - "$readings" "$dir" "$steps" "$every" "$samples" "$short" <<'EOF'
import json, math, os, statistics, sys

readings_path, run_dir, steps, every, samples, short = sys.argv[1:]
steps, every, samples, short = int(steps), int(every), int(samples), short == "1"
env = lambda k, d: float(os.environ.get(k, d))

# Readings -> one sample per (series, bucket of steps): the bucket's minimum.
size = steps / samples
buckets = {}
for line in open(readings_path):
    step, series, value = line.split("\t")
    b = min(int(int(step) / size), samples - 1)
    key = (series, b)
    buckets[key] = min(buckets.get(key, math.inf), float(value))
series_names = sorted({s for s, _ in buckets})
centre = lambda b: (b + 0.5) * size

# Per checkpoint, from metrics.jsonl; and the logs' sizes.
ckpts = {}
for line in open(os.path.join(run_dir, "metrics.jsonl")):
    r = json.loads(line)
    if r.get("kind") == "checkpoint":
        ckpts[r["step"]] = r
ck_steps = sorted(ckpts)
log_bytes = {n: os.path.getsize(os.path.join(run_dir, n)) for n in ("metrics.jsonl", "plan.jsonl")
             if os.path.exists(os.path.join(run_dir, n))}

def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 3:
        return math.nan
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else math.nan

def median_slope(points):
    """Theil-Sen: the median of the slopes of all pairs. A leak raises every part of a series;
    a one-time step (the allocator taking 1 MB once) only the pairs across it, fewer than half."""
    s = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points)
         for x2, y2 in points[i + 1:] if x2 != x1]
    return statistics.median(s) if s else math.nan

# The table of samples.
cols = [s for s in series_names]
head = ["step"] + [c.replace("_bytes", "_MB").replace("rss_kb", "rss_MB") for c in cols]
print("\nsamples (each the minimum of its bucket of %d steps):" % round(size))
print("  ".join(f"{h:>14}" for h in head))
for b in range(samples):
    if not any((c, b) in buckets for c in cols):
        continue
    row = [f"{centre(b):14.0f}"]
    for c in cols:
        v = buckets.get((c, b))
        if v is None:
            row.append(f"{'-':>14}")
        elif c.startswith("rss_kb"):
            row.append(f"{v / 1024:14.2f}")
        elif c.endswith("_bytes"):
            row.append(f"{v / 1e6:14.3f}")
        else:
            row.append(f"{v:14.0f}")
    print("  ".join(row))

# Verdicts: slope over the second half of the run, per 1000 steps, against a threshold.
half = steps / 2
checks = []  # (name, unit, start, end, slope per 1000 steps, threshold, counts)
for c in cols:
    pts = [(centre(b), buckets[(c, b)]) for b in range(samples) if (c, b) in buckets]
    second = [(x, y) for x, y in pts if x >= half]
    if c.startswith("fds"):
        thr, unit = 0.25 * 1000 / every, "fds"
    elif c.startswith("rss"):
        thr, unit = env("SOAK_RSS_KB_PER_KSTEP", 1024), "KB"
    else:
        thr, unit = env("SOAK_DISK_KB_PER_KSTEP", 64) * 1024, "bytes"
    checks.append((c, unit, pts[0][1] if pts else math.nan, pts[-1][1] if pts else math.nan,
                   slope(second) * 1000, median_slope(second) * 1000, thr, True))
ck_second = [s for s in ck_steps if s >= half]
for key, unit, thr, counts in (
    ("file_bytes", "bytes", env("SOAK_CKPT_BYTES_PER_KSTEP", 16384), True),
    ("write_s", "s", None, not short),
    ("stall_s", "s", None, not short),
):
    vals = [(s, float(ckpts[s][key])) for s in ck_steps if key in ckpts[s]]
    if not vals:
        continue
    second = [(s, v) for s, v in vals if s >= half]
    if thr is None:  # growth over the second half below half the median, or 10 ms
        thr = max(0.5 * statistics.median(v for _, v in vals), 0.010) * 1000 / max(1.0, steps - half)
    checks.append(("ckpt_" + key, unit, vals[0][1], vals[-1][1], slope(second) * 1000,
                   median_slope(second) * 1000, thr, counts))

print(f"\n{len(ck_steps)} checkpoints; {len(ck_second)} in the second half")
for n, b in log_bytes.items():
    print(f"append-only log {n}: {b} bytes, {b / steps:.0f} bytes per step (grows by design)")
print(f"\n{'series':<22}{'start':>14}{'end':>14}{'slope/1000 steps':>18}{'median slope':>14}"
      f"{'threshold':>12}  verdict")
growing = []
for name, unit, start, end, sl, ts, thr, counts in checks:
    flat = not math.isnan(sl) and (sl < thr or ts < thr)
    verdict = "flat" if flat else "GROWING"
    if not counts:
        verdict += " (timing: reported, not asserted)"
    elif not flat:
        growing.append(name)
    fmt = (lambda v: f"{v:14.4f}") if unit == "s" else (lambda v: f"{v:14.0f}")
    print(f"{name:<22}{fmt(start)}{fmt(end)}{sl:18.4f}{ts:14.4f}{thr:12.4f}  {verdict}  [{unit}]")
if growing:
    print("\nsoak.sh: GROWING: " + ", ".join(growing))
    sys.exit(1)
print("\nsoak.sh: every series is flat")
EOF
