// The script of `pft report`'s page (src/report/report.cpp embeds it after Chart.js and the
// metrics blob). It turns metrics.jsonl's records (docs/metrics.md) into Chart.js line charts on
// a linear step axis, then records what it drew in the DOM so a headless browser can check it:
//   #pft-status            data-state="ok" | "error", data-charts, data-errors
//   .pft-chart             data-chart (id), data-series, data-points, data-counts (JSON: series
//                          key -> points Chart.js parsed; the key is the metrics field, task or
//                          template name, "all"), and on the per-template charts data-metric,
//                          data-worst (a template name) and data-held-out (names, comma-separated)
//   #pft-errors            one <li> per error (window.onerror, console.error: the head's hook)
// Note [report resume]: a resumed run appends to metrics.jsonl and redoes the steps after its
// checkpoint, so a later record for the same step (and task, template) replaces an earlier one;
// tests/report/check_report.py counts points the same way (and Note [report runs] below).
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('pft-data').textContent);
  // Note [report runs]: a `start` record whose records (up to the next `start`) hold a `train`
  // step and no `resume` began a fresh run from step 0 (train.resume: none, or no checkpoint to
  // resume from) appended to an older run's records; the page shows the last such run (with its
  // resumes), the older ones would draw over it. A `start` with no step after it is no new run: a
  // resume that failed (exit 2: another model, a corrupt checkpoint) writes `start` and stops.
  let first = 0;
  data.records.forEach((r, i) => {
    if (r.kind !== 'start') return;
    let trained = false, resumed = false;
    for (let j = i + 1; j < data.records.length && data.records[j].kind !== 'start'; ++j) {
      if (data.records[j].kind === 'train') trained = true;
      if (data.records[j].kind === 'resume') resumed = true;
    }
    if (trained && !resumed) first = i;
  });
  const records = data.records.slice(first);
  if (first > 0) {
    const p = document.createElement('p');
    p.className = 'note';
    p.id = 'pft-earlier-runs';
    p.textContent = 'metrics.jsonl also holds an earlier run in this directory (started from step 0, ' +
        'not resumed): its ' + first + ' records are left out; this page shows the last run.';
    document.getElementById('pft-charts').before(p);
  }

  const tasks = [];  // in the order the run names them: eval records, then mixture keys
  const addTask = (t) => { if (!tasks.includes(t)) tasks.push(t); };
  const train = new Map();  // step -> train record
  const evals = new Map();  // task -> template -> step -> eval record
  const evalInfo = new Map();  // task -> template -> {name, heldOut}
  const mixture = new Map();  // step -> weights {task: share}
  const phases = new Map();  // step -> phase name
  const checkpoints = new Set(), evalSteps = new Set(), resumes = new Set();
  for (const r of records) {
    switch (r.kind) {
      case 'start':
        // The first phase's mixture, at step 0 of a fresh run (a resumed run's start record is
        // followed by its resume record and mixture records of its own).
        if (r.mixture && train.size === 0 && !mixture.has(0)) mixture.set(0, r.mixture);
        break;
      case 'resume': resumes.add(r.step); break;
      case 'phase': phases.set(r.step, r.phase); break;
      case 'mixture':
        mixture.set(r.step, r.weights);
        break;
      case 'eval': {
        addTask(r.task);
        evalSteps.add(r.step);
        if (!evals.has(r.task)) { evals.set(r.task, new Map()); evalInfo.set(r.task, new Map()); }
        const byTemplate = evals.get(r.task);
        const key = String(r.template);
        if (!byTemplate.has(key)) byTemplate.set(key, new Map());
        byTemplate.get(key).set(r.step, r);
        if (key !== 'all')
          evalInfo.get(r.task).set(key, {name: r.template_name || key, heldOut: !!r.held_out});
        break;
      }
      case 'train': train.set(r.step, r); break;
      case 'checkpoint': checkpoints.add(r.step); break;
    }
  }
  for (const w of mixture.values()) Object.keys(w).forEach(addTask);
  const trainSteps = [...train.keys()].sort((a, b) => a - b);
  // (No Math.max(...spread): a long run has more steps than a call takes arguments.)
  const lastStep = [trainSteps, evalSteps, checkpoints].reduce(
      (m, xs) => { for (const x of xs) if (x > m) m = x; return m; }, 0);

  // Phase bands: each phase from its first step to the next phase's (the run's last step).
  const phaseStarts = [...phases.entries()].sort((a, b) => a[0] - b[0]);
  const bands = phaseStarts.map(([step, name], i) => ({
    from: step, to: i + 1 < phaseStarts.length ? phaseStarts[i + 1][0] : lastStep, name}));

  const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                   '#bcbd22', '#17becf', '#393b79', '#637939', '#8c6d31'];
  const bandColours = ['rgba(31,119,180,0.08)', 'rgba(255,127,14,0.10)', 'rgba(44,160,44,0.08)',
                       'rgba(148,103,189,0.10)'];

  // Draws the phase bands, evaluation marks (dotted blue) and checkpoint marks (solid green)
  // under every step chart's lines.
  const marks = {
    id: 'pftMarks',
    beforeDatasetsDraw(chart) {
      const {ctx, chartArea: a, scales: {x}} = chart;
      ctx.save();
      bands.forEach((b, i) => {
        const x0 = x.getPixelForValue(b.from), x1 = x.getPixelForValue(Math.max(b.to, b.from));
        ctx.fillStyle = bandColours[i % bandColours.length];
        ctx.fillRect(x0, a.top, Math.max(x1 - x0, 1), a.bottom - a.top);
        ctx.fillStyle = '#555';
        ctx.font = '11px sans-serif';
        ctx.fillText(b.name, x0 + 3, a.top + 11);
      });
      const vline = (step, colour, dash) => {
        const px = x.getPixelForValue(step);
        if (px < a.left - 1 || px > a.right + 1) return;
        ctx.strokeStyle = colour;
        ctx.setLineDash(dash);
        ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(px, a.top); ctx.lineTo(px, a.bottom); ctx.stroke();
      };
      evalSteps.forEach((s) => vline(s, 'rgba(31,119,180,0.5)', [2, 3]));
      checkpoints.forEach((s) => vline(s, 'rgba(44,160,44,0.8)', []));
      resumes.forEach((s) => vline(s, 'rgba(214,39,40,0.8)', [6, 3]));
      ctx.restore();
    },
  };

  const finite = (v) => typeof v === 'number' && isFinite(v);
  const points = (steps, value) => {
    const out = [];
    for (const s of steps) { const v = value(s); if (finite(v)) out.push({x: s, y: v}); }
    return out;
  };
  const series = (label, pts, i, extra) => Object.assign({
    label, data: pts, borderColor: palette[i % palette.length],
    backgroundColor: palette[i % palette.length], borderWidth: 1.5,
    pointRadius: pts.length > 60 ? 0 : 2, spanGaps: true}, extra || {});

  const container = document.getElementById('pft-charts');
  const drawn = [];
  const chartBox = (id, title, note) => pftChartBox(container, id, title, note);  // page.js
  // What a chart drew, in the DOM for the browser test (the header's data attributes).
  function recordDrawn(box, c, attrs) {
    pftRecordDrawn(box, c, attrs);
    drawn.push(c);
  }
  function chart(id, title, yLabel, datasets, attrs, note, yRange) {
    const {box, canvas} = chartBox(id, title, note);
    const c = new Chart(canvas.getContext('2d'), {
      type: 'line',
      data: {datasets},
      options: {
        animation: false, parsing: true, normalized: true, responsive: true,
        maintainAspectRatio: false,
        scales: {x: {type: 'linear', title: {display: true, text: 'step'}, min: 0, max: Math.max(lastStep, 1)},
                 y: Object.assign({title: {display: true, text: yLabel}}, yRange || {})},
        plugins: {legend: {position: 'right', maxWidth: 320, labels: {boxWidth: 24}}},
      },
      plugins: [marks],
    });
    recordDrawn(box, c, attrs);
  }

  // 1. Training loss, overall and per task.
  chart('loss', 'Training loss', 'loss', [series('loss', points(trainSteps, (s) => train.get(s).loss), 0)]);
  const nTaskLoss = trainSteps.reduce((m, s) => Math.max(m, (train.get(s).task_loss || []).length), 0);
  const taskName = (k) => (k < tasks.length && nTaskLoss === tasks.length ? tasks[k] : 'task ' + k);
  const perTask = [];
  for (let k = 0; k < nTaskLoss; ++k)
    perTask.push(series(taskName(k), points(trainSteps, (s) => (train.get(s).task_loss || [])[k]), k));
  if (perTask.length) chart('task_loss', 'Training loss per task', 'loss', perTask);

  // 2. Held-out results: loss per task, then per task its templates over steps.
  const evalTasks = [...evals.keys()];
  if (evalTasks.length) {
    const sorted = (m) => [...m.keys()].sort((a, b) => a - b);
    chart('eval_loss', 'Held-out loss per task (validation split, all templates)', 'loss',
          evalTasks.map((t, i) => {
            const all = evals.get(t).get('all') || new Map();
            return series(t, points(sorted(all), (s) => all.get(s).loss), i);
          }));
    evalTasks.forEach((t, ti) => {
      const byTemplate = evals.get(t);
      // The metric: the one most of the task's templates have (a classification task scores
      // accuracy on every template, exact match only on some), exact match on a tie; else loss.
      const templates = [...byTemplate.entries()].filter(([key]) => key !== 'all');
      const having = (f) => templates.filter(([, m]) => [...m.values()].some((r) => finite(r[f]))).length;
      const em = having('exact_match'), acc = having('accuracy');
      const metric = em === 0 && acc === 0 ? 'loss' : em >= acc ? 'exact_match' : 'accuracy';
      const higherBetter = metric !== 'loss';
      // The worst template: the worst value of the metric at its last evaluation.
      let worst = null, worstValue = null;
      for (const [key, m] of byTemplate) {
        if (key === 'all' || m.size === 0) continue;
        const v = m.get(Math.max(...m.keys()))[metric];
        if (!finite(v)) continue;
        if (worst === null || (higherBetter ? v < worstValue : v > worstValue)) { worst = key; worstValue = v; }
      }
      const heldOut = [];
      const datasets = [];
      let i = 0;
      for (const [key, m] of byTemplate) {
        if (key === 'all') continue;
        const info = evalInfo.get(t).get(key);
        if (info.heldOut) heldOut.push(info.name);
        let label = info.name + (info.heldOut ? ' (held out)' : '');
        const extra = {};
        if (info.heldOut) extra.borderDash = [6, 4];
        if (key === worst) {
          label = 'worst: ' + label;
          Object.assign(extra, {borderColor: '#d62728', backgroundColor: '#d62728', borderWidth: 4});
        }
        extra.pftKey = info.name;
        datasets.push(series(label, points(sorted(m), (s) => m.get(s)[metric]), i++, extra));
      }
      const all = byTemplate.get('all');
      if (all)
        datasets.push(series('all templates', points(sorted(all), (s) => all.get(s)[metric]), 0,
                             {borderColor: '#000', backgroundColor: '#000', borderWidth: 2.5, pftKey: 'all'}));
      chart('eval_' + t, 'Held-out ' + metric.replace('_', ' ') + ': ' + t + ' per template',
            metric, datasets,
            {metric, worst: worst === null ? '' : evalInfo.get(t).get(worst).name,
             heldOut: heldOut.join(',')},
            'dashed: held-out templates (never trained on); thick red: the worst template at the last evaluation',
            higherBetter ? {min: 0, max: 1} : null);
    });
  }

  // 3. Mixture weights (a step line: a weight holds until the next change).
  if (mixture.size) {
    const steps = [...mixture.keys()].sort((a, b) => a - b);
    chart('mixture', 'Mixture weights', 'share of the batch',
          tasks.map((t, i) => series(t, points(steps, (s) => mixture.get(s)[t]), i, {stepped: 'before'}))
               .filter((d) => d.data.length > 0), null, null, {min: 0});
  }

  // 4. Throughput and communication; model FLOPs and MFU (the numbers of the progress line and
  // metrics.jsonl: train/flops.h).
  chart('throughput', 'Throughput', 'tokens / s',
        [series('tokens_per_s', points(trainSteps, (s) => train.get(s).tokens_per_s), 0,
                {label: 'all ranks', pftKey: 'tokens_per_s'}),
         series('tokens_per_s_per_rank', points(trainSteps, (s) => train.get(s).tokens_per_s_per_rank), 1,
                {label: 'per rank', pftKey: 'tokens_per_s_per_rank'})].filter((d) => d.data.length > 0));
  const flops = points(trainSteps, (s) => train.get(s).model_tflops_per_rank);
  if (flops.length)
    chart('flops', 'Model TFLOP/s per rank', 'TFLOP/s',
          [series('model_tflops_per_rank', flops, 2)], null,
          'model FLOPs per token (6N + attention, PaLM\'s count; the method\'s backward) x tokens/s per rank');
  const mfu = points(trainSteps, (s) => train.get(s).mfu);
  if (mfu.length)
    chart('mfu', 'MFU: model FLOPs utilisation per rank', 'fraction of the GPU\'s peak',
          [series('mfu', mfu, 3)], null, null, {min: 0});
  chart('comm', 'Step time and communication wait', 'seconds', [
    series('step_time_s', points(trainSteps, (s) => train.get(s).step_time_s), 0),
    series('step_time_max_s', points(trainSteps, (s) => train.get(s).step_time_max_s), 3),
    series('comm_time_s', points(trainSteps, (s) => train.get(s).comm_time_s), 1),
    series('control_s', points(trainSteps, (s) => train.get(s).control_s), 2),
  ]);

  // 5. A few steps of trace.json, one row per rank and lane (Note [report timeline], report.cpp),
  // unless trace.json is older than the run this page shows (an earlier run's, left in place).
  const runStart = records.length && records[0].kind === 'start' ? records[0].time : null;
  if (data.trace && typeof data.trace.mtime === 'number' && typeof runStart === 'number' &&
      data.trace.mtime < runStart) {
    const p = document.createElement('p');
    p.className = 'note';
    p.id = 'pft-stale-trace';
    p.textContent = 'trace.json is older than this run (an earlier run traced it): no timeline.';
    document.getElementById('pft-charts').before(p);
  } else if (data.trace) {
    timeline(data.trace);
  }
  function timeline(t) {
    const laneIds = [...new Set(t.spans.map((sp) => sp[1]))].sort((a, b) => a - b);
    const rankIds = [...new Set(t.spans.map((sp) => sp[0]))].sort((a, b) => a - b);
    const laneName = (l) => t.lanes[String(l)] || 'lane ' + l;
    const rankName = (r) => (t.ranks && t.ranks[String(r)]) || 'rank ' + r;
    const row = (r, l) => rankName(r) + ': ' + laneName(l);
    const rows = [];
    for (const r of rankIds) for (const l of laneIds) rows.push(row(r, l));
    const datasets = laneIds.map((l, i) => ({
      label: laneName(l), pftKey: laneName(l), grouped: false, borderSkipped: false,
      backgroundColor: palette[i % palette.length], borderColor: palette[i % palette.length],
      borderWidth: 0, barPercentage: 0.8, categoryPercentage: 1.0,
      data: t.spans.filter((sp) => sp[1] === l).map((sp) => ({
        y: row(sp[0], sp[1]), x: [sp[3], Math.max(sp[4], sp[3] + 0.001)], name: sp[2], step: sp[5]})),
    }));
    const steps = t.from_step === t.to_step ? 'step ' + t.from_step : 'steps ' + t.from_step + '-' + t.to_step;
    const {box, canvas} = chartBox('timeline', 'Timeline: ' + steps + ' of trace.json, every rank',
        'trace.json holds steps ' + t.first_step + '-' + t.last_step + ' (open it in Perfetto or ' +
        'chrome://tracing for all of them; pft report --trace-steps A:B shows others). Times on rank 0\'s clock.');
    box.classList.add('pft-wide');
    box.style.height = Math.max(260, 90 + rows.length * 22) + 'px';
    const c = new Chart(canvas.getContext('2d'), {
      type: 'bar',
      data: {labels: rows, datasets},
      options: {
        indexAxis: 'y', animation: false, responsive: true, maintainAspectRatio: false,
        scales: {x: {type: 'linear', min: 0, max: t.window_ms, title: {display: true, text: 'ms from the window\'s start'}},
                 y: {type: 'category', labels: rows, ticks: {autoSkip: false, font: {size: 10}}}},
        plugins: {
          legend: {position: 'right', labels: {boxWidth: 14}},
          tooltip: {callbacks: {label: (ctx) => {
            const d = ctx.raw;
            return d.name + (d.step >= 0 ? ' (step ' + d.step + ')' : '') + ': ' + (d.x[1] - d.x[0]).toFixed(2) + ' ms';
          }}},
        },
      },
    });
    recordDrawn(box, c, {fromStep: String(t.from_step), toStep: String(t.to_step)});
  }

  pftFinish(drawn.length, drawn.length + ' charts from ' + records.length + ' records');  // page.js
})();
