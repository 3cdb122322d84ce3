// Thin helpers over uPlot (vendored, global `uPlot`): themed line charts that fit their box.

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

const PALETTE = ["--cpu", "--temp", "--mem", "--net-in", "--net-out", "--up", "--stale", "--down"];
const TICK = 10;   // uPlot's default tick length and label gap, px
const GAP = 5;
const measure = document.createElement("canvas").getContext("2d");

// The y axis as wide as its widest label: a fixed width cut "20000 MiB" to ":0000 MiB".
function axisSize(u, values, axisIdx) {
  if (!values) return 40;
  measure.font = u.axes[axisIdx].font[0];
  const widest = Math.max(0, ...values.map((v) => measure.measureText(String(v)).width));
  return Math.ceil(widest / (window.devicePixelRatio || 1)) + TICK + GAP + 4;
}

// RANGE (seconds, or a function giving them): the x axis always shows the last RANGE seconds
// up to NOW(), however few points there are (one point alone made uPlot span years).
export function lineChart(target, series,
  { max = null, height = 170, value = null, range = null, now = () => Date.now() / 1000 } = {}) {
  const width = Math.max(200, target.clientWidth || 300);
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 },
    ticks: { stroke: cssVar("--line"), size: TICK }, gap: GAP };
  const seconds = typeof range === "function" ? range : () => range;
  const x = range == null ? { time: true } : { time: true, range: () => [now() - seconds(), now()] };
  const opts = {
    width,
    height,
    cursor: { drag: { x: false, y: false } },
    scales: { x, y: max == null ? { auto: true, range: (u, lo, hi) => [0, Math.max(hi, 1)] } : { range: [0, max] } },
    axes: [axis, { ...axis, size: axisSize, values: value ? (u, ticks) => ticks.map(value) : undefined }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: cssVar(s.color || PALETTE[i % PALETTE.length]),
      width: s.width ?? 1.5,
      points: { show: false },
      spanGaps: false,
      value: value ? (u, v) => (v == null ? "–" : value(v)) : undefined,
    }))],
  };
  const chart = new uPlot(opts, [[], ...series.map(() => [])], target);
  target.chart = chart;   // the chart of a box, for the browser's console and the tests
  new ResizeObserver(() => {
    const w = Math.max(200, target.clientWidth);
    if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height });
  }).observe(target);
  return chart;
}

export function setData(chart, data) {
  chart.setData(data);
}
