"""Reads a run's TensorBoard event files with TensorBoard's own reader and checks them against
the run's metrics.jsonl: the same tags (docs/observability.md, Note [TensorBoard tags] in
src/train/tensorboard.h), and for each tag the same steps, values (float32) and wall times.

    tensorboard_check.py RUN_DIR [--files N]

A resumed run appends to metrics.jsonl and adds an event file; what an earlier process wrote
after the resumed checkpoint's step is superseded (the resumed run writes those steps again), and
TensorBoard must show exactly the points of the resumed run from there on. Prints
"tensorboard OK: T tags, P points, F files" on success; exits 1 naming the first differences.
"""
import json
import math
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator


def number(v):
    # JSON numbers only: booleans, strings, null (a non-finite loss) are not scalars.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def expected_points(records):
    """tag -> {step: (value, time)} from metrics.jsonl, as the run stands at its end."""
    tasks = []
    out = {}
    resumed_at = None

    def put(tag, step, v, t):
        x = number(v)
        if x is not None:
            out.setdefault(tag, {})[step] = (x, t)

    for r in records:
        kind, step, t = r["kind"], r.get("step"), r["time"]
        if kind == "start":
            tasks = list(r.get("mixture", {}).keys()) or [f"synthetic{k}" for k in range(3)]
            continue
        if kind == "resume":
            # The run went on from the checkpoint of `step`: what an earlier process wrote after
            # it (steps it will write again, and evaluations it may not repeat) is superseded.
            for points in out.values():
                for s in [s for s in points if s > step]:
                    del points[s]
            resumed_at = step
            continue
        if kind in ("phase", "mixture") and resumed_at is not None and step <= resumed_at:
            continue  # the schedule's state at the checkpoint, restated: the earlier file has it
        if step is None:
            continue
        fields = {k: v for k, v in r.items() if k not in ("kind", "step", "time")}
        if kind == "train":
            for k, v in fields.items():
                put(f"train/{k}", step, v, t)
            for field, name in (("task_loss", "loss"), ("task_tokens", "target_tokens")):
                for k, v in enumerate(r.get(field, [])):
                    put(f"train/{name}/{tasks[k]}", step, v, t)
        elif kind == "eval":
            prefix = (f"eval/{r['task']}" if r["template"] == "all"
                      else f"eval/{r['task']}/{r['template_name']}")
            for k, v in fields.items():
                if k != "template":
                    put(f"{prefix}/{k}", step, v, t)
        elif kind == "mixture":
            for task, w in r["weights"].items():
                put(f"mixture/{task}", step, w, t)
        elif kind == "phase":
            put("schedule/phase", step, r["index"], t)
        elif kind in ("checkpoint", "end"):
            for k, v in fields.items():
                put(f"{kind}/{k}", step, v, t)
    return out


def main():
    run_dir = sys.argv[1]
    want_files = int(sys.argv[sys.argv.index("--files") + 1]) if "--files" in sys.argv else None
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    expected = expected_points(records)

    logdir = os.path.join(run_dir, "tensorboard")
    files = sorted(n for n in os.listdir(logdir) if n.startswith("events.out.tfevents."))
    errors = []
    if want_files is not None and len(files) != want_files:
        errors.append(f"{len(files)} event files, expected {want_files}: {files}")
    # size_guidance 0: keep every point (the default samples 10,000 per tag).
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    got_tags = set(acc.Tags()["scalars"])
    if got_tags != set(expected):
        errors.append(f"tags only in TensorBoard: {sorted(got_tags - set(expected))}")
        errors.append(f"tags only in metrics.jsonl: {sorted(set(expected) - got_tags)}")
    points = 0
    for tag in sorted(got_tags & set(expected)):
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        if steps != sorted(expected[tag]):
            errors.append(f"{tag}: steps {steps}, metrics.jsonl has {sorted(expected[tag])}")
            continue
        for e in events:
            value, t = expected[tag][e.step]
            # simple_value is a float32: the JSON double rounded once, compared in float32.
            if not (np.float32(e.value) == np.float32(value)
                    or math.isclose(e.value, value, rel_tol=1e-6)):
                errors.append(f"{tag} step {e.step}: {e.value} != {value}")
            if e.wall_time != t:
                errors.append(f"{tag} step {e.step}: wall time {e.wall_time!r} != {t!r}")
            points += 1
    if errors:
        print("\n".join(errors[:40]))
        return 1
    print(f"tensorboard OK: {len(got_tags)} tags, {points} points, {len(files)} files")
    for tag in sorted(got_tags):
        print(f"  {tag}: {len(acc.Scalars(tag))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
