// Thin helpers over uPlot (vendored, global `uPlot`): themed line charts that fit their box,
// select-to-zoom, and the from/to inputs that set a group of charts' range exactly.
import { el } from "/static/format.js";

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export const PALETTE = ["--cpu", "--temp", "--mem", "--net-in", "--net-out", "--up", "--stale", "--down"];
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

// SPAN (a function giving [from, to], epoch seconds): the x axis always shows that window,
// however few points there are (one point alone made uPlot span years). RANGE (seconds, or a
// function giving them) with NOW is the same as the last RANGE seconds up to NOW().
// ONSELECT(from, to): dragging across the chart selects a window and calls it (zoom).
export function lineChart(target, series,
  { max = null, height = 170, value = null, range = null, now = () => Date.now() / 1000,
    span = null, onSelect = null } = {}) {
  const width = Math.max(200, target.clientWidth || 300);
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 },
    ticks: { stroke: cssVar("--line"), size: TICK }, gap: GAP };
  const seconds = typeof range === "function" ? range : () => range;
  const win = span ?? (range == null ? null : () => [now() - seconds(), now()]);
  const x = win == null ? { time: true } : { time: true, range: () => win() };
  const opts = {
    width,
    height,
    cursor: { drag: { x: onSelect != null, y: false, setScale: false } },
    select: { show: onSelect != null },
    scales: { x, y: max == null ? { auto: true, range: (u, lo, hi) => [0, Math.max(hi, 1)] } : { range: [0, max] } },
    axes: [axis, { ...axis, size: axisSize, values: value ? (u, ticks) => ticks.map(value) : undefined }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      // past the palette, hues spread around the wheel (the compare chart's 9th to 12th node)
      stroke: i < PALETTE.length || s.color ? cssVar(s.color || PALETTE[i]) : `hsl(${(i * 137.5) % 360} 70% 45%)`,
      width: s.width ?? 1.5,
      points: { show: false },
      spanGaps: false,
      value: value ? (u, v) => (v == null ? "–" : value(v)) : undefined,
    }))],
    hooks: onSelect == null ? {} : {
      setSelect: [(u) => {
        const { left, width: w } = u.select;
        if (w < 3) return;
        const lo = u.posToVal(left, "x");
        const hi = u.posToVal(left + w, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        if (hi > lo) onSelect(lo, hi);
      }],
    },
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

// Epoch seconds as a datetime-local input's value (local time, to the second), and back.
function toInput(ts) {
  const d = new Date(ts * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}
function fromInput(text) {
  const t = new Date(text).getTime();
  return Number.isFinite(t) ? t / 1000 : null;
}

// From/to inputs, "apply" and "reset" in BOX for a group of charts. ONAPPLY(from, to) when the
// user sets a window (from < to), ONRESET() to go back to the live range. Returns
// { show(from, to, zoomed) } to put the window the charts show into the inputs.
export function rangeInputs(box, { onApply, onReset }) {
  box.classList.add("range-inputs");
  const field = (label) => {
    const input = el("input");
    input.type = "datetime-local";
    input.step = "1";
    const wrap = el("label", null, `${label} `);
    wrap.append(input);
    return [wrap, input];
  };
  const [fromLabel, from] = field("from");
  const [toLabel, to] = field("to");
  const apply = el("button", "apply", "apply");
  apply.type = "button";
  const reset = el("button", "reset", "reset");
  reset.type = "button";
  reset.title = "back to the live range";
  box.append(fromLabel, toLabel, apply, reset);
  const submit = () => {
    const lo = fromInput(from.value);
    const hi = fromInput(to.value);
    const ok = lo != null && hi != null && hi > lo;
    to.setCustomValidity(ok ? "" : "'to' must come after 'from'");
    to.reportValidity();
    if (ok) onApply(lo, hi);
  };
  apply.addEventListener("click", submit);
  for (const input of [from, to]) {
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit(); } });
  }
  reset.addEventListener("click", () => onReset());
  return {
    show(lo, hi, zoomed) {
      box.classList.toggle("zoomed", zoomed);
      reset.disabled = !zoomed;
      if (document.activeElement === from || document.activeElement === to) return;
      from.value = toInput(lo);
      to.value = toInput(hi);
      to.setCustomValidity("");
    },
  };
}
