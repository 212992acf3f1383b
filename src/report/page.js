// What the run page (report.js) and the sweep page (sweep_report.js) share; report.cpp and
// sweep_report.cpp write it into the same <script> element, before the page's own script.
//   pftChartBox(container, id, title, note)  a chart's <section class="pft-chart"> with its title,
//                                            note and canvas, appended; returns {box, canvas}
//   pftRecordDrawn(box, chart, attrs)        what the chart drew, in the box's data attributes
//                                            (data-series, data-points, data-counts and attrs)
//                                            for the headless-browser tests
//   pftFinish(charts, text)                  #pft-status after the last chart: state ok or
//                                            error (the head's error hook), the chart count
function pftChartBox(container, id, title, note) {
  const box = document.createElement('section');
  box.className = 'pft-chart';
  box.dataset.chart = id;
  const h = document.createElement('h2');
  h.textContent = title;
  box.appendChild(h);
  if (note) { const p = document.createElement('p'); p.className = 'note'; p.textContent = note; box.appendChild(p); }
  const canvas = document.createElement('canvas');
  box.appendChild(canvas);
  container.appendChild(box);
  return {box, canvas};
}

function pftRecordDrawn(box, c, attrs) {
  const counts = {};
  let total = 0;
  c.data.datasets.forEach((d, i) => {
    const n = c.getDatasetMeta(i).data.length;
    counts[d.pftKey || d.label] = n;
    total += n;
  });
  box.dataset.series = String(c.data.datasets.length);
  box.dataset.points = String(total);
  box.dataset.counts = JSON.stringify(counts);
  for (const [k, v] of Object.entries(attrs || {})) box.dataset[k] = v;
}

function pftFinish(charts, text) {
  const status = document.getElementById('pft-status');
  const errors = window.pftErrors || [];
  status.dataset.charts = String(charts);
  status.dataset.errors = String(errors.length);
  status.dataset.state = errors.length ? 'error' : 'ok';
  status.textContent = text;
}
