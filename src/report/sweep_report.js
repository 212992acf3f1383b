// The script of `pft report SWEEP_DIR`'s page (src/report/sweep_report.cpp embeds it after
// Chart.js and the sweep blob; Note [sweep report]). The blob holds, per trial in rank order, its
// id, searched params, state, steps, objective, whether it is the best, its objective curve
// ([step, value] per evaluation, sweep/results.h read_trial_progress) and its training loss
// ([step, loss] per train record). After drawing, what was drawn goes into the DOM for the
// headless-browser test (tests/report/check_sweep_report.py), as report.js does:
//   #pft-status     data-state="ok" | "error", data-charts, data-errors
//   .pft-chart      data-chart (objective | loss | scatter_<key>), data-series, data-points,
//                   data-counts (JSON: trial id -> points Chart.js parsed; for a scatter, the
//                   key -> points), data-best (the best trial's id), data-stopped (ids),
//                   data-log-y ("true" | "false"), and on scatters data-key and data-log-x
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('pft-data').textContent);
  const trials = data.trials;
  const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                   '#bcbd22', '#17becf', '#393b79', '#637939', '#8c6d31'];
  const best = trials.find((t) => t.best);
  const stopped = trials.filter((t) => t.state === 'stopped').map((t) => t.id);
  const finite = (v) => typeof v === 'number' && isFinite(v);
  const paramText = (t) => Object.entries(t.params).map(([k, v]) => k + '=' + v).join(' ');

  // One series per trial (every trial, an empty one included, so a legend entry says it exists):
  // the best thick black, ASHA-stopped dashed with a cross at its last point, failed dotted.
  const trialSeries = (t, i, points) => {
    const colour = t.best ? '#000' : palette[i % palette.length];
    const last = points.length - 1;
    const d = {
      label: (t.best ? 'best: ' : '') + t.id + ' ' + paramText(t) +
             (t.state === 'finished' || t.best ? '' : ' (' + t.state + ')'),
      pftKey: t.id, data: points, borderColor: colour, backgroundColor: colour,
      borderWidth: t.best ? 4 : 1.5, pointRadius: points.length > 60 ? 0 : 2, spanGaps: true,
    };
    if (t.state === 'stopped') {
      d.borderDash = [6, 4];
      d.pointStyle = points.map((_, j) => (j === last ? 'crossRot' : 'circle'));
      d.pointRadius = points.map((_, j) => (j === last ? 8 : (points.length > 60 ? 0 : 2)));
      d.pointBorderWidth = points.map((_, j) => (j === last ? 2.5 : 1));
    } else if (t.state === 'failed') {
      d.borderDash = [2, 3];
    }
    return d;
  };
  const toPoints = (pairs) => pairs.filter((p) => finite(p[1])).map((p) => ({x: p[0], y: p[1]}));

  const container = document.getElementById('pft-charts');
  const drawn = [];
  function chart(id, title, note, config, attrs) {
    const {box, canvas} = pftChartBox(container, id, title, note);  // page.js
    const c = new Chart(canvas.getContext('2d'), config);
    pftRecordDrawn(box, c, Object.assign(
        {best: best ? best.id : '', stopped: stopped.join(',')}, attrs || {}));
    drawn.push(c);
  }
  // A log y axis when the values are positive and span more than two decades: a diverging
  // trial's loss of 8000 would otherwise flatten every other trial's line at the bottom.
  const logY = (ys) => {
    let lo = Infinity, hi = -Infinity;
    for (const y of ys) { if (y < lo) lo = y; if (y > hi) hi = y; }
    return lo > 0 && hi / lo >= 100;
  };
  const lineOptions = (yLabel, log) => ({
    animation: false, parsing: true, normalized: true, responsive: true,
    maintainAspectRatio: false,
    scales: {x: {type: 'linear', title: {display: true, text: 'step'}, min: 0},
             y: {type: log ? 'logarithmic' : 'linear',
                 title: {display: true, text: yLabel + (log ? ' (log scale)' : '')}}},
    plugins: {legend: {position: 'right', maxWidth: 360, labels: {boxWidth: 24}}},
  });
  const lineChart = (id, title, yLabel, pairsOf) => {
    const datasets = trials.map((t, i) => trialSeries(t, i, toPoints(pairsOf(t))));
    const log = logY(datasets.flatMap((d) => d.data.map((p) => p.y)));
    chart(id, title, legendNote, {type: 'line', data: {datasets}, options: lineOptions(yLabel, log)},
          {logY: String(log)});
  };
  const legendNote = 'thick black: the best trial; dashed ending in a cross: stopped early ' +
                     '(ASHA); dotted: failed';

  // 1. The objective over steps, one series per trial.
  lineChart('objective', 'Objective: ' + data.metric + ' per trial over steps' +
            (data.higher_is_better ? ' (higher is better)' : ' (lower is better)'),
            data.metric, (t) => t.curve);

  // 2. The training loss over steps, one series per trial.
  lineChart('loss', 'Training loss per trial', 'training loss', (t) => t.loss);

  // 3. The objective against each numeric searched parameter that takes two values or more: a
  //    log axis for learning rates (and any positive parameter whose values span two decades).
  data.keys.forEach((key) => {
    const values = trials.map((t) => Number(t.params[key]));
    if (!trials.every((t) => key in t.params && String(t.params[key]).trim() !== '') ||
        !values.every(finite) || new Set(values).size < 2)
      return;  // not numeric, or one value (a fixed key: nothing to compare)
    const positive = values.every((v) => v > 0);
    const span = positive ? Math.max(...values) / Math.min(...values) : 0;
    const logX = positive && (/(^|[._])lr$|learning_rate/.test(key) || span >= 100);
    const points = [], colours = [], radii = [];
    trials.forEach((t, i) => {
      if (!finite(t.objective)) return;
      points.push({x: values[i], y: t.objective, trial: t.id});
      colours.push(t.best ? '#d62728' : palette[0]);
      radii.push(t.best ? 7 : 4);
    });
    const log = logY(points.map((p) => p.y));
    chart('scatter_' + key, data.metric + ' against ' + key,
          'one point per trial with an objective (its last evaluation); red: the best trial' +
          (logX ? '; log scale' : ''),
          {type: 'scatter',
           data: {datasets: [{label: key, pftKey: key, data: points, backgroundColor: colours,
                              borderColor: colours, pointRadius: radii}]},
           options: {
             animation: false, responsive: true, maintainAspectRatio: false,
             scales: {x: {type: logX ? 'logarithmic' : 'linear', title: {display: true, text: key},
                          // On a log axis, label the decades only, as 1e-9 rather than 0.000000001.
                          ticks: logX ? {callback: (v) => {
                            const l = Math.log10(v);
                            return Math.abs(l - Math.round(l)) < 1e-9 ? Number(v).toExponential(0) : '';
                          }} : {}},
                      y: {type: log ? 'logarithmic' : 'linear',
                          title: {display: true, text: data.metric + (log ? ' (log scale)' : '')}}},
             plugins: {
               legend: {display: false},
               tooltip: {callbacks: {label: (c) => c.raw.trial + ': ' + key + '=' + c.raw.x + ', ' +
                                                   data.metric + '=' + c.raw.y}},
             },
           }},
          {key, logX: String(logX), logY: String(log)});
  });

  pftFinish(drawn.length, drawn.length + ' charts of ' + trials.length + ' trials');  // page.js
})();
