// Node detail: history charts of one node over 15 min .. 7 d (or a window chosen by dragging
// across a chart or in the from/to inputs), updated live; its top processes and filesystems.
import { bytes, clock, duration, el, mib, mibLabel } from "/static/format.js";
import { lineChart, rangeInputs, setData } from "/static/charts.js";

const $ = (id) => document.getElementById(id);
let current = null;     // { name, range, zoom, charts, rows, io, cores, timer, ... }
let shared = null;      // the overview's state (nodes, clock offset, live disk I/O and swap)
let routes = null;      // the API paths the master serves (a promise), asked once

const METRICS = ["cpuusage", "cputemp", "mem_used", "mem_total", "load1", "load5", "load15",
  "net_rx", "net_tx"];
const IO_KEYS = ["disk_read", "disk_write", "swap_in", "swap_out"];
const CHART_IDS = ["d-cpu", "d-temp", "d-mem", "d-load", "d-net", "d-disk", "d-swap"];
const IO_CHARTS = new Set(["disk", "swap"]);

function nowServer() { return Date.now() / 1000 + (shared?.offset ?? 0); }
function span() {
  return current?.zoom ?? [nowServer() - (current?.range ?? 900), nowServer()];
}

const rangeBox = rangeInputs($("d-range"), {
  onApply: (lo, hi) => zoom(lo, hi),
  onReset: () => { if (current) { current.zoom = null; pressed(); load(); } },
});

function zoom(lo, hi) {
  if (!current) return;
  current.zoom = [lo, hi];
  pressed();
  load();
}

function pressed() {
  for (const button of document.querySelectorAll(".ranges button")) {
    const on = !current?.zoom && Number(button.dataset.range) === current?.range;
    button.setAttribute("aria-pressed", String(on));
  }
}

function destroy() {
  if (!current) return;
  clearInterval(current.timer);
  for (const chart of Object.values(current.charts)) chart.destroy();
  for (const id of CHART_IDS) $(id).replaceChildren();
  current = null;
}

function buildCharts(cores) {
  const coreSeries = Array.from({ length: cores }, (_, i) => ({
    label: `core ${i}`, color: "--muted", width: 1 }));
  const percent = (v) => `${v.toFixed(0)}%`;
  // every chart spans the chosen window, whatever the data's extent; dragging zooms them all
  const common = { span, onSelect: zoom };
  const perSecond = (v) => `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}/s`;
  return {
    cpu: lineChart($("d-cpu"), [{ label: "total", color: "--cpu", width: 2.5 }, ...coreSeries],
      { max: 100, value: percent, height: 200, ...common }),
    temp: lineChart($("d-temp"), [{ label: "°C", color: "--temp" }],
      { value: (v) => `${Number.isInteger(v) ? v : v.toFixed(1)} °C`, ...common }),
    mem: lineChart($("d-mem"), [{ label: "used", color: "--mem" }, { label: "total", color: "--muted" }],
      { value: mibLabel, ...common }),
    load: lineChart($("d-load"), [{ label: "1 min", color: "--cpu" }, { label: "5 min", color: "--mem" },
      { label: "15 min", color: "--muted" }], common),
    net: lineChart($("d-net"), [{ label: "in", color: "--net-in" }, { label: "out", color: "--net-out" }],
      { value: (v) => bytes(v, "/s"), ...common }),
    disk: lineChart($("d-disk"), [{ label: "read", color: "--net-in" }, { label: "write", color: "--net-out" }],
      { value: (v) => bytes(v, "/s"), ...common }),
    swap: lineChart($("d-swap"), [{ label: "in", color: "--mem" }, { label: "out", color: "--temp" }],
      { value: perSecond, ...common }),
  };
}

// Columns per chart, as functions of one merged row {ts, metric: value}.
const COLUMNS = {
  cpu: (r, cores) => [r.cpuusage * 100, ...Array.from({ length: cores }, (_, i) => (r[`core.${i}`] ?? null) * 100)],
  // a node without a sensor reports 0 °C (the original wire format's "unknown"): no line
  temp: (r) => [r.cputemp > 0 ? r.cputemp : null],
  mem: (r) => [r.mem_used / 1024, r.mem_total / 1024],
  load: (r) => [r.load1, r.load5, r.load15],
  net: (r) => [r.net_rx, r.net_tx],
  disk: (r) => [r.disk_read, r.disk_write],
  swap: (r) => [r.swap_in, r.swap_out],
};

function draw(chart, key, rows) {
  const cols = rows.map((r) => COLUMNS[key](r, current.cores));
  const width = chart.series.length - 1;
  const data = [rows.map((r) => r.ts)];
  for (let i = 0; i < width; i += 1) {
    data.push(cols.map((c) => (c[i] != null && Number.isFinite(c[i]) ? c[i] : null)));
  }
  setData(chart, data);
}

function redraw() {
  const { rows, io } = current;
  for (const [key, chart] of Object.entries(current.charts)) draw(chart, key, IO_CHARTS.has(key) ? io : rows);
  const noTemp = rows.length > 0 && rows.every((r) => !(r.cputemp > 0));
  $("d-temp-none").hidden = !noTemp;
  const [lo, hi] = span();
  const inside = io.filter((r) => r.ts >= lo && r.ts <= hi);
  const since = shared?.opened ? ` since ${clock(shared.opened)}` : "";
  for (const [key, pair, what] of [["disk", ["disk_read", "disk_write"], "disk I/O"],
    ["swap", ["swap_in", "swap_out"], "swap"]]) {
    // history keeps 0 where a node sends nothing: its heartbeats tell which it has
    const sends = !current.ioKeys || pair.some((k) => current.ioKeys.has(k));
    const has = sends && inside.some((r) => pair.some((k) => r[k] != null));
    const note = $(`d-${key}-none`);
    note.hidden = has;
    if (!has) {
      note.textContent = !sends ? `no ${what} from this node (its heartbeats carry none)`
        : current.ioHistory ? `no ${what} from this node in this range`
        : `no ${what} from this node${since} (not in history: charted live from when this page opened)`;
    }
  }
  rangeBox.show(lo, hi, current.zoom != null);
}

// What the overview kept of this node's disk I/O and swap since the page opened.
function liveIo(name) {
  const flat = shared?.io?.get(name) || [];
  const out = [];
  for (let i = 0; i + 4 < flat.length; i += 5) {
    out.push({ ts: flat[i], disk_read: flat[i + 1], disk_write: flat[i + 2], swap_in: flat[i + 3],
      swap_out: flat[i + 4] });
  }
  return out;
}

function merge(body) {
  const byTs = new Map();
  for (const [metric, points] of Object.entries(body.series)) {
    for (const [t, v] of points) {
      let row = byTs.get(t);
      if (!row) { row = { ts: t }; byTs.set(t, row); }
      row[metric] = v;
    }
  }
  return [...byTs.values()].sort((a, b) => a.ts - b.ts);
}

async function load() {
  if (!current) return;
  const { name } = current;
  const [lo, hi] = span();
  const query = current.zoom ? `since=${lo}&until=${hi}` : `since=-${current.range}`;
  const metrics = [...METRICS, ...Array.from({ length: current.cores }, (_, i) => `core.${i}`)];
  const base = `/api/nodes/${encodeURIComponent(name)}/history?${query}&metric=`;
  const ask = (current.asked = (current.asked || 0) + 1);
  const [main, io] = await Promise.all([
    fetch(base + metrics.join(",")).then((r) => (r.ok ? r.json() : null)).catch(() => null),
    // disk I/O and swap from history where this master keeps them (see /api/registry)
    current.ioHistory ? fetch(base + IO_KEYS.join(",")).then((r) => (r.ok ? r.json() : null))
      .catch(() => null) : null,
  ]);
  if (current === null || current.name !== name || current.asked !== ask) return;
  if (main) {
    current.rows = merge(main);
    current.step = main.step;
  }
  current.io = io ? merge(io) : liveIo(name).filter((r) => r.ts >= lo && r.ts <= hi);
  redraw();
}

// --- the header, the filesystems and the top processes --------------------------------------
function header(node) {
  $("d-name").textContent = current.name;
  if (node?.metrics) current.ioKeys = new Set(IO_KEYS.filter((k) => k in node.metrics));
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
  if (s.model) bits.push(s.model);
  if (node.rebooted_at) bits.push(`rebooted at ${clock(node.rebooted_at)}`);
  $("d-meta").textContent = bits.join(" · ");
}

// A node's filesystems as rows [mount, total, used, free]: from `filesystems` (a list of
// {mount or mountpoint, total or size, used, free}) where the master gives it, else the
// sample's `fs` ({mount point: [total, used, free]}).
function filesystems(node) {
  const list = node?.filesystems;
  if (Array.isArray(list)) {
    return list.map((f) => [f.mount ?? f.mountpoint ?? f.path ?? "?", f.total ?? f.size, f.used, f.free]);
  }
  return Object.entries(node?.sample?.fs || {}).map(([mount, [total, used, free]]) => [mount, total, used, free]);
}

function renderFs(node) {
  const rows = filesystems(node).sort((a, b) => a[0].localeCompare(b[0]));
  const key = JSON.stringify(rows);
  if (key === current.fsKey) return;
  current.fsKey = key;
  $("d-fs-none").hidden = rows.length > 0;
  $("d-fs").hidden = rows.length === 0;
  $("d-fs").tBodies[0].replaceChildren(...rows.map(([mount, total, used, free]) => {
    const tr = el("tr");
    const share = total ? Math.round((used / total) * 100) : null;
    const bar = el("span", `usebar${share >= 90 ? " full" : share >= 80 ? " filling" : ""}`);
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", `${mount} used`);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    if (share != null) bar.setAttribute("aria-valuenow", String(share));
    const fill = el("b");
    fill.style.width = `${share ?? 0}%`;
    bar.append(fill);
    const use = el("td", "use");
    use.append(bar, el("span", null, share == null ? "–" : `${share}%`));
    tr.append(el("td", "mount", mount), el("td", "num", bytes(total)), el("td", "num", bytes(used)),
      el("td", "num", bytes(free)), use);
    return tr;
  }));
}

async function loadProcesses() {
  if (!current) return;
  const { name } = current;
  routes ??= fetch("/api/routes").then((r) => (r.ok ? r.json() : [])).catch(() => []);
  const served = (await routes).includes("/api/nodes/{name}/processes");
  let body = null;
  if (served) {
    body = await fetch(`/api/nodes/${encodeURIComponent(name)}/processes`)
      .then((r) => (r.ok ? r.json() : null)).catch(() => null);
  }
  if (!current || current.name !== name) return;
  const procs = (body && Array.isArray(body.processes)) ? body.processes : [];
  $("d-procs-none").hidden = procs.length > 0;
  $("d-procs").hidden = procs.length === 0;
  $("d-procs-when").textContent = procs.length && body.ts ? `(as of ${clock(body.ts)})` : "";
  $("d-procs").tBodies[0].replaceChildren(...procs.map((p) => {
    const tr = el("tr");
    const cpu = Number.isFinite(p.cpu) ? `${p.cpu.toFixed(1)}%` : "–";
    // rss in bytes
    tr.append(el("td", "mount", String(p.name ?? "?")), el("td", null, String(p.pid ?? "–")),
      el("td", "num", cpu), el("td", "num", Number.isFinite(p.rss) ? mib(p.rss / 1024) : "–"));
    return tr;
  }));
}

export function show(name, state) {
  shared = state;
  const node = state.nodes.get(name);
  const cores = node?.sample?.cores?.length ?? 0;
  if (!current || current.name !== name || current.cores !== cores) {
    const range = current?.range ?? 900;
    destroy();
    current = { name, range, zoom: null, cores, rows: [], io: [], step: 1, charts: null,
      ioHistory: false, fsKey: null };
    current.charts = buildCharts(cores);
    current.timer = setInterval(() => {
      if (!current.zoom && current.range > 3600) load();
      loadProcesses();
    }, 10000);
    // disk I/O and swap come from history only where the master keeps them
    fetch("/api/registry").then((r) => (r.ok ? r.json() : [])).then((reg) => {
      const stored = new Set(reg.filter((m) => m.stored).map((m) => m.name));
      if (current && current.name === name && IO_KEYS.every((k) => stored.has(k))) {
        current.ioHistory = true;
        load();
      }
    }).catch(() => {});
  }
  header(node);
  renderFs(node);
  pressed();
  load();
  loadProcesses();
}

export function hide() { destroy(); }

export function onNodes(views) {
  if (!current) return;
  const node = views.find((v) => v.name === current.name);
  if (!node) return;
  header(node);
  renderFs(node);
  const s = node.sample;
  if (!s || current.zoom || current.range > 3600) return;
  const cutoff = s.ts - current.range;
  const m = node.metrics || {};
  if (IO_KEYS.some((k) => k in m)) {
    const lastIo = current.io[current.io.length - 1];
    if (!lastIo || s.ts > lastIo.ts) {
      current.io.push({ ts: s.ts, ...Object.fromEntries(IO_KEYS.map((k) => [k, m[k] ?? null])) });
      while (current.io.length && current.io[0].ts < cutoff) current.io.shift();
    }
  }
  const last = current.rows[current.rows.length - 1];
  if (last && s.ts - last.ts < current.step) { redraw(); return; }
  // the same metrics, by the same names, as the history API's series
  const row = { ts: s.ts, ...m };
  (s.cores || []).forEach((c, i) => { row[`core.${i}`] = c; });
  current.rows.push(row);
  while (current.rows.length && current.rows[0].ts < cutoff) current.rows.shift();
  redraw();
}

for (const button of document.querySelectorAll(".ranges button")) {
  button.addEventListener("click", () => {
    if (!current) return;
    current.range = Number(button.dataset.range);
    current.zoom = null;
    pressed();
    load();
  });
}
