// Thin helpers over uPlot (vendored, global `uPlot`): themed line charts that fit their box.

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

const PALETTE = ["--cpu", "--temp", "--mem", "--net-in", "--net-out", "--up", "--stale", "--down"];

export function lineChart(target, series, { max = null, height = 170, value = null } = {}) {
  const width = Math.max(200, target.clientWidth || 300);
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 },
    ticks: { stroke: cssVar("--line") } };
  const opts = {
    width,
    height,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: max == null ? { auto: true, range: (u, lo, hi) => [0, Math.max(hi, 1)] } : { range: [0, max] } },
    axes: [axis, { ...axis, size: 74, values: value ? (u, ticks) => ticks.map(value) : undefined }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: cssVar(s.color || PALETTE[i % PALETTE.length]),
      width: s.width ?? 1.5,
      points: { show: false },
      value: value ? (u, v) => (v == null ? "–" : value(v)) : undefined,
    }))],
  };
  const chart = new uPlot(opts, [[], ...series.map(() => [])], target);
  new ResizeObserver(() => {
    const w = Math.max(200, target.clientWidth);
    if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height });
  }).observe(target);
  return chart;
}

export function setData(chart, data) {
  chart.setData(data);
}
