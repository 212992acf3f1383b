#!/usr/bin/env python3
"""Checks `pft report SWEEP_DIR`'s page as a browser drew it (tests/report/sweep_report_browser_test.sh).

    check_sweep_report.py SWEEP_DIR DOM_HTML SCREENSHOT_PNG|- STATUS_OUT METRIC
                          [--unreadable TRIAL:LINE] [--no-report TRIAL] [--stopped TRIAL]
                          [--page PAGE]   (the page's path, when not SWEEP_DIR/report.html)

DOM_HTML is `chromium --dump-dom` of SWEEP_DIR/report.html after its scripts ran (the charts'
<section>s hold what Chart.js parsed: src/report/sweep_report.js's header). STATUS_OUT is what
`pft sweep status SWEEP_DIR` printed: the page's ranking, states, steps and objectives must be
the same. Everything else is computed here on its own from the trials' metrics.jsonl and
sweep.jsonl: the objective per evaluation (METRIC, as sweep/results.h documents it), the training
loss per step (a later record of a step replaces an earlier one), lines that do not parse skipped.
Standard library only.
"""
import json
import math
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_report  # noqa: E402
from check_report import check_page, check_screenshot, fail, finite  # noqa: E402


class Dom(check_report.Dom):
    """check_report.Dom (charts, status, errors, outside loads) and the trials' table rows."""

    def __init__(self):
        super().__init__()
        self.rows, self.row, self.cell = [], None, None

    def handle_starttag(self, tag, attrs):
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        if tag == "tr" and "pft-trial" in a.get("class", ""):
            self.row = {"attrs": a, "cells": [], "hrefs": [], "objective": None}
            self.rows.append(self.row)
        if self.row is not None and tag == "td":
            self.cell = ""
            if "data-objective" in a:
                self.row["objective"] = float(a["data-objective"])
        if self.row is not None and tag == "a":
            self.row["hrefs"].append(a.get("href"))

    def handle_endtag(self, tag):
        super().handle_endtag(tag)
        if tag == "td" and self.row is not None:
            self.row["cells"].append(self.cell.strip())
            self.cell = None
        if tag == "tr":
            self.row = None

    def handle_data(self, data):
        super().handle_data(data)
        if self.cell is not None:
            self.cell += data


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line that does not parse: pft skips it too
            if isinstance(r, dict) and isinstance(r.get("kind"), str):
                out.append(r)
    return out


def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def objective_curve(records, metric):
    """[(step, objective)] per evaluation step, as sweep/results.h computes it."""
    key = metric[len("eval."):]
    by_step = {}
    for r in records:
        if r["kind"] == "eval" and r.get("template") == "all":
            by_step.setdefault(r["step"], {})[r["task"]] = r
    curve = []
    for step in sorted(by_step):
        tasks = by_step[step]
        if "." in key:
            task, field = key.rsplit(".", 1)
            if task not in tasks or field not in tasks[task]:
                continue
            curve.append((step, num(tasks[task][field])))
            continue
        vals = [num(r[key]) for r in tasks.values() if num(r.get("tokens")) > 0 and key in r]
        if vals:
            curve.append((step, sum(vals) / len(vals)))
    return curve


def status_rows(text):
    """`pft sweep status` table rows: [rank, trial, params..., objective, steps, state]."""
    rows = []
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 3 and w[0].isdigit() and len(w[1]) == 4 and w[1][0] == "t":
            rows.append(w)
    return rows


def main():
    sweep_dir, dom_path, png, status_path, metric = sys.argv[1:6]
    opts = {}
    rest = sys.argv[6:]
    for i in range(0, len(rest), 2):
        opts.setdefault(rest[i], []).append(rest[i + 1])
    unreadable = dict(x.split(":") for x in opts.get("--unreadable", []))
    no_report = set(opts.get("--no-report", []))
    stopped = set(opts.get("--stopped", []))

    dom = Dom()
    with open(dom_path) as f:
        dom.feed(f.read())
    check_page(dom)

    # The trials: every one sweep.jsonl says was started.
    events = read_jsonl(os.path.join(sweep_dir, "sweep.jsonl"))
    trials = sorted({e["trial"] for e in events if e["kind"] == "started"})
    if len(trials) < 2:
        fail(f"the test expects a sweep of several trials, sweep.jsonl started {trials}")

    # The table: one row per trial, in `pft sweep status`'s order, with its states and numbers.
    with open(status_path) as f:
        status = status_rows(f.read())
    ids = [r["attrs"]["data-trial"] for r in dom.rows]
    if sorted(ids) != trials:
        fail(f"table rows {ids}, sweep.jsonl started {trials}")
    if ids != [s[1] for s in status]:
        fail(f"table order {ids}, `pft sweep status` ranks {[s[1] for s in status]}")
    page = opts.get("--page", [os.path.join(sweep_dir, "report.html")])[0]
    page_dir = os.path.dirname(os.path.abspath(page))
    for row, st in zip(dom.rows, status):
        tid, cells = row["attrs"]["data-trial"], row["cells"]
        state, steps, objective = st[-1], st[-2], st[-3]
        if row["attrs"]["data-state"] != state:
            fail(f"{tid}: state {row['attrs']['data-state']}, status says {state}")
        page_objective = "-" if row["objective"] is None else f"{row['objective']:.4f}"
        if page_objective != objective:
            fail(f"{tid}: objective {page_objective}, status says {objective}")
        if steps not in cells:
            fail(f"{tid}: steps {steps} not in the row {cells}")
        if (st[0] == "1" and state in ("finished", "stopped") and objective != "-") != \
                (row["attrs"].get("data-best") == "true"):
            fail(f"{tid}: best marked {row['attrs'].get('data-best')!r}, status rank {st[0]} {state}")
        # The link to the trial's own run report resolves, relative to the page.
        if tid in no_report:
            if row["hrefs"]:
                fail(f"{tid}: links {row['hrefs']}, expected no run report")
            if "no run report" not in cells[-1]:
                fail(f"{tid}: the row does not say why it has no run report: {cells[-1]!r}")
        else:
            if len(row["hrefs"]) != 1:
                fail(f"{tid}: links {row['hrefs']}, expected one to its run report")
            target = os.path.normpath(os.path.join(page_dir, urllib.parse.unquote(row["hrefs"][0])))
            want = os.path.normpath(os.path.join(os.path.abspath(sweep_dir), "trials", tid, "report.html"))
            if target != want or not os.path.isfile(target):
                fail(f"{tid}: link {row['hrefs'][0]} -> {target}, expected the existing {want}")
            with open(target) as f:
                if "<h1>pft report</h1>" not in f.read():
                    fail(f"{target} is not a run report")
        if tid in unreadable and f"metrics.jsonl:{unreadable[tid]}" not in cells[-1]:
            fail(f"{tid}: the row does not name metrics.jsonl:{unreadable[tid]}: {cells[-1]!r}")
        last = [e for e in events if e.get("trial") == tid][-1]
        if last["kind"] == "failed" and last["message"] not in cells[-1]:
            fail(f"{tid}: the row does not hold the failure message {last['message']!r}")

    # The charts: one series per trial, as many points as its metrics.jsonl holds.
    want_objective, want_loss, objectives, drawn_objective, drawn_loss = {}, {}, {}, [], []
    for tid in trials:
        records = read_jsonl(os.path.join(sweep_dir, "trials", tid, "metrics.jsonl"))
        curve = objective_curve(records, metric)
        want_objective[tid] = sum(1 for _, v in curve if finite(v))
        objectives[tid] = curve[-1][1] if curve else None
        loss = {}
        for r in records:
            if r["kind"] == "train" and isinstance(r.get("step"), int):
                loss[r["step"]] = r.get("loss")
        want_loss[tid] = sum(1 for v in loss.values() if finite(v))
        drawn_objective += [v for _, v in curve if finite(v)]
        drawn_loss += [v for v in loss.values() if finite(v)]
    for cid, want in (("objective", want_objective), ("loss", want_loss)):
        if cid not in dom.charts:
            fail(f"no {cid} chart; charts: {sorted(dom.charts)}")
        got = json.loads(dom.charts[cid]["data-counts"])
        if got != want or dom.charts[cid]["data-series"] != str(len(trials)):
            fail(f"chart {cid}: points per trial {got}, metrics.jsonl has {want}")
    # A log y axis exactly when the drawn values are positive and span two decades or more.
    for cid, values in (("objective", drawn_objective), ("loss", drawn_loss)):
        want_log = bool(values) and min(values) > 0 and max(values) / min(values) >= 100
        if dom.charts[cid].get("data-log-y") != str(want_log).lower():
            fail(f"chart {cid}: data-log-y {dom.charts[cid].get('data-log-y')}, values span "
                 f"{min(values or [0])}..{max(values or [0])}")
    if sum(want_objective.values()) == 0 or sum(want_loss.values()) == 0:
        fail("the sweep's trials have no evaluation or no training step to draw")
    # The objective at the last evaluation, computed here, is the page's (and status's).
    for row in dom.rows:
        tid, v = row["attrs"]["data-trial"], objectives[row["attrs"]["data-trial"]]
        if v is None or not finite(v):
            continue
        if row["objective"] is None or abs(row["objective"] - v) > 1e-9 * max(1.0, abs(v)):
            fail(f"{tid}: objective {row['objective']}, metrics.jsonl gives {v}")
    best = [r["attrs"]["data-trial"] for r in dom.rows if r["attrs"].get("data-best") == "true"]
    if dom.charts["objective"]["data-best"] != (best[0] if best else ""):
        fail(f"the chart's best {dom.charts['objective']['data-best']!r}, the table's {best}")
    page_stopped = set(filter(None, dom.charts["objective"]["data-stopped"].split(",")))
    if page_stopped != stopped:
        fail(f"stopped trials drawn {sorted(page_stopped)}, expected {sorted(stopped)}")

    # A scatter per numeric searched key: every trial with a finite objective, log x for lr.
    with_objective = sum(1 for v in objectives.values() if v is not None and finite(v))
    scatters = {c: a for c, a in dom.charts.items() if c.startswith("scatter_")}
    if "scatter_train.lr" not in scatters or scatters["scatter_train.lr"]["data-log-x"] != "true":
        fail(f"no log-x scatter of train.lr: {sorted(scatters)}")
    for cid, a in scatters.items():
        if a["data-points"] != str(with_objective):
            fail(f"{cid}: {a['data-points']} points, {with_objective} trials have an objective")
    if dom.status.get("data-charts") != str(len(dom.charts)):
        fail(f"#pft-status counts {dom.status.get('data-charts')} charts, the page has {len(dom.charts)}")
    print(f"{len(trials)} trials, {len(dom.charts)} charts, objective points {want_objective}, "
          f"loss points {want_loss}, as the trials' metrics.jsonl hold")

    if png == "-":
        return
    check_screenshot(png)

if __name__ == "__main__":
    main()
