// Node detail: history charts of one node over 15 min .. 7 d, updated live.
import { bytes, clock, duration } from "/static/format.js";
import { lineChart, setData } from "/static/charts.js";

const $ = (id) => document.getElementById(id);
let current = null;     // { name, range, charts, data, cores, timer }

const METRICS = ["cpuusage", "cputemp", "mem_used", "mem_total", "load1", "load5", "load15",
  "net_rx", "net_tx"];

function destroy() {
  if (!current) return;
  clearInterval(current.timer);
  for (const chart of Object.values(current.charts)) chart.destroy();
  for (const id of ["d-cpu", "d-temp", "d-mem", "d-load", "d-net"]) $(id).replaceChildren();
  current = null;
}

function buildCharts(cores) {
  const coreSeries = Array.from({ length: cores }, (_, i) => ({
    label: `core ${i}`, color: "--muted", width: 1 }));
  const percent = (v) => `${v.toFixed(0)}%`;
  return {
    cpu: lineChart($("d-cpu"), [{ label: "total", color: "--cpu", width: 2.5 }, ...coreSeries],
      { max: 100, value: percent, height: 200 }),
    temp: lineChart($("d-temp"), [{ label: "°C", color: "--temp" }]),
    mem: lineChart($("d-mem"), [{ label: "used", color: "--mem" }, { label: "total", color: "--muted" }],
      { value: (v) => `${v.toFixed(0)} MiB` }),
    load: lineChart($("d-load"), [{ label: "1 min", color: "--cpu" }, { label: "5 min", color: "--mem" },
      { label: "15 min", color: "--muted" }]),
    net: lineChart($("d-net"), [{ label: "in", color: "--net-in" }, { label: "out", color: "--net-out" }],
      { value: (v) => bytes(v, "/s") }),
  };
}

// Columns per chart, as functions of one merged row {ts, metric: value}.
const COLUMNS = {
  cpu: (r, cores) => [r.cpuusage * 100, ...Array.from({ length: cores }, (_, i) => (r[`core.${i}`] ?? null) * 100)],
  temp: (r) => [r.cputemp],
  mem: (r) => [r.mem_used / 1024, r.mem_total / 1024],
  load: (r) => [r.load1, r.load5, r.load15],
  net: (r) => [r.net_rx, r.net_tx],
};

function redraw() {
  const rows = current.rows;
  const ts = rows.map((r) => r.ts);
  for (const [key, chart] of Object.entries(current.charts)) {
    const cols = rows.map((r) => COLUMNS[key](r, current.cores));
    const width = cols.length ? cols[0].length : chart.series.length - 1;
    const data = [ts];
    for (let i = 0; i < width; i += 1) data.push(cols.map((c) => (Number.isFinite(c[i]) ? c[i] : null)));
    setData(chart, data);
  }
}

async function load() {
  const { name, range } = current;
  const metrics = [...METRICS, ...Array.from({ length: current.cores }, (_, i) => `core.${i}`)];
  const url = `/api/nodes/${encodeURIComponent(name)}/history?metric=${metrics.join(",")}&since=-${range}`;
  const response = await fetch(url);
  if (!response.ok || current === null || current.name !== name) return;
  const body = await response.json();
  const byTs = new Map();
  for (const [metric, points] of Object.entries(body.series)) {
    for (const [t, v] of points) {
      let row = byTs.get(t);
      if (!row) { row = { ts: t }; byTs.set(t, row); }
      row[metric] = v;
    }
  }
  current.rows = [...byTs.values()].sort((a, b) => a.ts - b.ts);
  current.step = body.step;
  redraw();
}

function header(node) {
  $("d-name").textContent = current.name;
  const badge = $("d-status");
  if (!node) {
    badge.className = "badge down";
    badge.textContent = "unknown";
    $("d-meta").textContent = "no such node on this master";
    return;
  }
  badge.className = `badge ${node.status}`;
  badge.textContent = node.status;
  const s = node.sample || {};
  const bits = [node.address, `${(s.cores || []).length} cores`, `up ${duration(s.uptime)}`,
    `boot ${clock(node.boot)}`];
  if (node.rebooted_at) bits.push(`rebooted at ${clock(node.rebooted_at)}`);
  $("d-meta").textContent = bits.join(" · ");
}

export function show(name, state) {
  const node = state.nodes.get(name);
  const cores = node?.sample?.cores?.length ?? 0;
  if (!current || current.name !== name || current.cores !== cores) {
    const range = current?.range ?? 900;
    destroy();
    current = { name, range, cores, rows: [], step: 1, charts: buildCharts(cores) };
    current.timer = setInterval(() => { if (current.range > 3600) load(); }, 60000);
  }
  header(node);
  for (const button of document.querySelectorAll(".ranges button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.range) === current.range));
  }
  load();
}

export function hide() { destroy(); }

export function onNodes(views) {
  if (!current) return;
  const node = views.find((v) => v.name === current.name);
  if (!node) return;
  header(node);
  const s = node.sample;
  if (!s || current.range > 3600) return;
  const last = current.rows[current.rows.length - 1];
  if (last && s.ts - last.ts < current.step) return;
  // the same metrics, by the same names, as the history API's series
  const row = { ts: s.ts, ...node.metrics };
  (s.cores || []).forEach((c, i) => { row[`core.${i}`] = c; });
  current.rows.push(row);
  const cutoff = s.ts - current.range;
  while (current.rows.length && current.rows[0].ts < cutoff) current.rows.shift();
  redraw();
}

for (const button of document.querySelectorAll(".ranges button")) {
  button.addEventListener("click", () => {
    if (!current) return;
    current.range = Number(button.dataset.range);
    for (const b of document.querySelectorAll(".ranges button")) {
      b.setAttribute("aria-pressed", String(b === button));
    }
    load();
  });
}
