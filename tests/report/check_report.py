#!/usr/bin/env python3
"""Checks `pft report`'s page as a browser drew it (tests/report/report_browser_test.sh).

    check_report.py METRICS_JSONL DOM_HTML SCREENSHOT_PNG|- [--skipped LINE ...]

DOM_HTML is `chromium --dump-dom` of the page: after its scripts ran, each chart's <section>
holds what Chart.js parsed (src/report/report.js's header). The expected counts are computed
here from METRICS_JSONL on their own (a later record of a step replaces an earlier one: Note
[report resume]); a line that does not parse is skipped, as `pft report` skips it. Standard
library only (the PNG is decoded with zlib).
"""
import json
import math
import struct
import sys
import zlib
from html.parser import HTMLParser


def fail(msg):
    print("check_report.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.charts, self.status, self.errors, self.in_errors = {}, None, [], False
        self.scripts_with_src, self.links = 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "pft-chart" in a.get("class", ""):
            self.charts[a["data-chart"]] = a
        if a.get("id") == "pft-status":
            self.status = a
        if a.get("id") == "pft-errors":
            self.in_errors = True
        if tag == "li" and self.in_errors:
            self.errors.append("")
        if tag == "script" and "src" in a:
            self.scripts_with_src += 1
        if tag == "link":
            self.links += 1

    def handle_endtag(self, tag):
        if tag == "ul":
            self.in_errors = False

    def handle_data(self, data):
        if self.in_errors and self.errors:
            self.errors[-1] += data


def expected_counts(metrics_path):
    records = []
    with open(metrics_path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and isinstance(r.get("kind"), str):
                records.append(r)
    # Only the last run started from step 0: a start record whose records up to the next start
    # hold a train step and no resume (Note [report runs]; a failed resume's start holds nothing).
    def fresh(i):
        kinds = []
        for r in records[i + 1:]:
            if r["kind"] == "start":
                break
            kinds.append(r["kind"])
        return "train" in kinds and "resume" not in kinds
    first = max([i for i, r in enumerate(records) if r["kind"] == "start" and fresh(i)] or [0])
    train, evals, mixture, start_mixture = {}, {}, {}, None
    info, task_order = {}, []
    for r in records[first:]:
        k = r.get("kind")
        if k == "train":
            train[r["step"]] = r
        elif k == "eval":
            if r["task"] not in task_order:
                task_order.append(r["task"])
            tmpl = "all" if r["template"] == "all" else r["template_name"]
            evals.setdefault(r["task"], {}).setdefault(tmpl, {})[r["step"]] = r
            if tmpl != "all":
                info.setdefault(r["task"], {})[tmpl] = (r["template"], r["held_out"])
        elif k == "mixture":
            mixture[r["step"]] = r["weights"]
        elif k == "start" and "mixture" in r and start_mixture is None and not train:
            start_mixture = r["mixture"]
    if start_mixture is not None and 0 not in mixture:
        mixture[0] = start_mixture
    count = lambda rows, f: sum(1 for r in rows if finite(f(r)))
    out = {
        "loss": {"loss": count(train.values(), lambda r: r["loss"])},
        "throughput": {f: count(train.values(), lambda r, f=f: r[f])
                       for f in ("tokens_per_s", "tokens_per_s_per_rank")},
        "flops": {"model_tflops_per_rank": count(train.values(), lambda r: r["model_tflops_per_rank"])},
        "comm": {f: count(train.values(), lambda r, f=f: r[f])
                 for f in ("step_time_s", "step_time_max_s", "comm_time_s", "control_s")},
        "task_loss": {t: count(train.values(), lambda r, k=k: r["task_loss"][k])
                      for k, t in enumerate(task_order)},
        "eval_loss": {t: count(evals[t]["all"].values(), lambda r: r["loss"]) for t in task_order},
        "mixture": {t: sum(1 for w in mixture.values() if t in w) for t in task_order},
    }
    mfu = count(train.values(), lambda r: r.get("mfu"))
    if mfu:  # only on a GPU of train/flops.cpp's table
        out["mfu"] = {"mfu": mfu}
    return out, evals, info, task_order


def expected_timeline(trace_path, from_step, to_step):
    """Spans per lane name of trace.json in the page's window (Note [report timeline]): from the
    first rank's start of from_step to the first rank's start of to_step + 1 (or, for the last
    traced step, the end of its step and step-boundary spans), on any rank."""
    with open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    lanes = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name" and e["tid"] < 10}
    lane = lambda tid: tid % 10  # a bucket's track (lane + 10 x track): its lane's row
    spans = [e for e in events if e["ph"] == "X"]
    step = lambda e: e.get("args", {}).get("step", -1)
    t0 = min(e["ts"] for e in spans if e["tid"] == 0 and from_step <= step(e) <= to_step)
    nxt = [e["ts"] for e in spans if e["tid"] == 0 and step(e) == to_step + 1]
    t1 = min(nxt) if nxt else max(e["ts"] + e["dur"] for e in spans
                                  if e["tid"] in (0, 6) and step(e) == to_step)
    counts, rows = {}, set()
    for e in spans:
        if e["ts"] + e["dur"] <= t0 or e["ts"] >= t1:
            continue
        name = lanes[lane(e["tid"])]
        counts[name] = counts.get(name, 0) + 1
        rows.add((e["pid"], lane(e["tid"])))
    return counts, {p for p, _ in rows}


def check_eval_chart(task, chart, evals, info):
    metric = chart.get("data-metric")
    templates = [t for t in evals[task] if t != "all"]
    # The metric most templates have (exact match on a tie), as the page documents.
    having = {m: sum(1 for t in templates if any(finite(r.get(m)) for r in evals[task][t].values()))
              for m in ("exact_match", "accuracy")}
    want_metric = ("loss" if not any(having.values()) else
                   "exact_match" if having["exact_match"] >= having["accuracy"] else "accuracy")
    if metric != want_metric:
        fail(f"eval_{task}: metric {metric}, expected {want_metric} ({having})")
    want = {t: sum(1 for r in evals[task][t].values() if finite(r.get(metric))) for t in evals[task]}
    got = json.loads(chart["data-counts"])
    if got != want:
        fail(f"eval_{task}: points per template {got}, metrics.jsonl has {want}")
    held = sorted(t for t, (_, h) in info[task].items() if h)
    if not held:
        fail(f"eval_{task}: the test expects a held-out template in metrics.jsonl")
    if sorted(filter(None, chart["data-held-out"].split(","))) != held:
        fail(f"eval_{task}: held-out templates {chart['data-held-out']!r}, metrics.jsonl: {held}")
    # The worst template: the worst value at its last evaluation, the first in template order on
    # a tie.
    worst, worst_v = None, None
    for t in sorted(templates, key=lambda t: info[task][t][0]):
        rows = evals[task][t]
        v = rows[max(rows)].get(metric)
        if not finite(v):
            continue
        if worst is None or (v > worst_v if metric == "loss" else v < worst_v):
            worst, worst_v = t, v
    if chart["data-worst"] != (worst or ""):
        fail(f"eval_{task}: worst template {chart['data-worst']!r}, expected {worst!r}")


def check_page(dom):
    """The page drew without an error and loads nothing from outside itself."""
    if dom.status is None:
        fail("no #pft-status in the page")
    if dom.errors or dom.status.get("data-state") != "ok":
        fail(f"page state {dom.status.get('data-state')!r}, errors: {dom.errors}")
    if dom.scripts_with_src or dom.links:
        fail("the page loads something from outside itself (<script src> or <link>)")


def check_screenshot(png):
    """Not blank: many colours, and the charts' own (the palette's blue and orange, the red of
    the worst template or the best trial's highlight) in it. A text-only page has none of them."""
    width, height, pixels = png_pixels(png)
    near = lambda p, c: all(abs(p[i] - c[i]) <= 24 for i in range(3))
    hits = {name: sum(1 for p in pixels if near(p, c)) for name, c in
            (("blue", (0x1f, 0x77, 0xb4)), ("orange", (0xff, 0x7f, 0x0e)), ("red", (0xd6, 0x27, 0x28)))}
    non_white = sum(1 for p in pixels if min(p) < 235)
    colours = len(set(pixels))
    print(f"screenshot {width}x{height}: {colours} distinct colours, "
          f"{100.0 * non_white / len(pixels):.1f}% non-white, palette pixels {hits}")
    if colours < 64 or non_white < 0.02 * len(pixels) or min(hits.values()) < 30:
        fail("the screenshot looks blank (too few colours or chart pixels)")


def png_pixels(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                fail(f"{path}: unexpected PNG format depth {depth} colour type {ctype}")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels = []
    for y in range(height):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels.extend(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
        prev = line
    return width, height, pixels


def main():
    metrics, dom_path, png = sys.argv[1:4]
    skipped = sys.argv[sys.argv.index("--skipped") + 1:] if "--skipped" in sys.argv else []
    dom = Dom()
    with open(dom_path) as f:
        text = f.read()
    dom.feed(text)
    check_page(dom)
    for line in skipped:
        if f" {line} (" not in text:
            fail(f"the page does not name skipped line {line}")

    trace = sys.argv[sys.argv.index("--trace") + 1] if "--trace" in sys.argv else None
    want, evals, info, tasks = expected_counts(metrics)
    expected_charts = set(want) | {"eval_" + t for t in tasks}
    if trace:
        expected_charts.add("timeline")
        tl = dom.charts.get("timeline")
        if tl is None:
            fail("no timeline chart for a run with trace.json")
        lo, hi = int(tl["data-from-step"]), int(tl["data-to-step"])
        counts, ranks = expected_timeline(trace, lo, hi)
        got = json.loads(tl["data-counts"])
        if got != counts:
            fail(f"timeline of steps {lo}-{hi}: spans per lane {got}, trace.json has {counts}")
        must = {"step", "forward", "backward", "gradient all-reduce", "optimizer", "controller"}
        if not must <= set(got) or len(ranks) < 2:
            fail(f"timeline: lanes {sorted(got)} of ranks {sorted(ranks)}; expected at least "
                 f"{sorted(must)} on 2 ranks")
        print(f"timeline: steps {lo}-{hi}, {sum(got.values())} spans in {len(got)} lanes, as trace.json holds")
    if set(dom.charts) != expected_charts:
        fail(f"charts {sorted(dom.charts)}, expected {sorted(expected_charts)}")
    if dom.status.get("data-charts") != str(len(expected_charts)):
        fail(f"#pft-status counts {dom.status.get('data-charts')} charts")
    for cid, counts in want.items():
        got = json.loads(dom.charts[cid]["data-counts"])
        if got != counts:
            fail(f"chart {cid}: points per series {got}, metrics.jsonl has {counts}")
        if int(dom.charts[cid]["data-series"]) != len(counts) or any(v <= 0 for v in counts.values()):
            fail(f"chart {cid}: {dom.charts[cid]['data-series']} series, expected {len(counts)} non-empty")
    for t in tasks:
        check_eval_chart(t, dom.charts["eval_" + t], evals, info)

    n_points = sum(int(c["data-points"]) for c in dom.charts.values())
    print(f"{len(dom.charts)} charts, {n_points} points, as metrics.jsonl holds")
    if png == "-":
        return
    check_screenshot(png)

if __name__ == "__main__":
    main()
