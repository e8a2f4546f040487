// Time-series charts on uPlot (canvas; 100k points draw in milliseconds, no stutter).
import uPlot from 'uplot';
import { t, fmtNumber, fmtDate, currentLanguage } from './i18n.js';
import { h } from './util.js';

/**
 * Draws `ys` over `xs` (seconds since the epoch) into `container`; answers the uPlot instance.
 * The container gets `data-points` (how many points are drawn) and a text summary for screen
 * readers; the first render time is kept in window.__cityhub.timings.charts.
 */
export function renderChart(container, xs, ys, label = '') {
  const began = performance.now();
  const width = Math.max(320, container.clientWidth || 640);
  const fmt = new Intl.DateTimeFormat(currentLanguage(), { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const plot = new uPlot(
    {
      width,
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [
        { space: 120, values: (u, splits) => splits.map((s) => fmt.format(new Date(s * 1000))) },
        { values: (u, splits) => splits.map((s) => fmtNumber(s)) },
      ],
      series: [{}, { label, stroke: '#1f5fa8', width: 1.5, points: { show: xs.length < 200 } }],
    },
    [xs, ys],
    container,
  );
  const ms = performance.now() - began;
  const timings = (window.__cityhub ??= { timings: {} }).timings;
  (timings.charts ??= []).push({ points: xs.length, ms });
  container.dataset.points = String(xs.length);
  container.dataset.renderMs = ms.toFixed(1);
  container.setAttribute('role', 'img');
  let min = Infinity;
  let max = -Infinity;
  for (const y of ys) {
    if (y < min) min = y;
    if (y > max) max = y;
  }
  const summary = xs.length
    ? t('chart.summary', {
        n: fmtNumber(xs.length),
        from: fmtDate(new Date(xs[0] * 1000).toISOString()),
        to: fmtDate(new Date(xs[xs.length - 1] * 1000).toISOString()),
        min: fmtNumber(min),
        max: fmtNumber(max),
        last: fmtNumber(ys[ys.length - 1]),
      })
    : t('chart.empty');
  container.setAttribute('aria-label', `${label}: ${summary}`);
  container.append(h('p', { class: 'sr-only' }, summary));
  return plot;
}
