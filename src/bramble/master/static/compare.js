// Compare chosen nodes on one chart: one series per node, one metric, from each node's history.
// Loaded when the "Compare nodes" panel first opens; remembers its choice in localStorage.
import { bytes, el, mibLabel } from "/static/format.js";
import { lineChart, rangeInputs, setData } from "/static/charts.js";

const MAX = 12;                 // series on one chart, at most
const KEY = "bramble-compare";
const LASTS = [["900", "15 min"], ["3600", "1 h"], ["86400", "24 h"], ["604800", "7 d"]];

// How a metric of UNIT reads on the axis, and the factor its values are charted at.
function scaleOf(unit) {
  if (unit === "ratio") return [100, (v) => `${v.toFixed(0)}%`];
  if (unit === "kB") return [1 / 1024, mibLabel];
  if (unit === "bytes/s") return [1, (v) => bytes(v, "/s")];
  if (unit === "bytes") return [1, (v) => bytes(v)];
  const suffix = unit ? ` ${unit}` : "";
  return [1, (v) => `${Number.isInteger(v) ? v : v.toFixed(1)}${suffix}`];
}

export async function mountCompare(box, { nodes, visible, now }) {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(KEY) || "{}"); } catch { saved = {}; }
  const st = {
    chosen: new Set(Array.isArray(saved.nodes) ? saved.nodes.slice(0, MAX) : []),
    metric: saved.metric || "cpuusage",
    last: Number(saved.last) || 3600,
    zoom: null,
    chart: null,
    drawn: "",          // the metric and nodes the chart was made for
  };
  const save = () => localStorage.setItem(KEY, JSON.stringify(
    { nodes: [...st.chosen], metric: st.metric, last: st.last }));

  const registry = await fetch("/api/registry").then((r) => r.json()).catch(() => []);
  const stored = registry.filter((m) => m.stored);
  const units = new Map(stored.map((m) => [m.name, m.unit]));
  if (!units.has(st.metric)) st.metric = "cpuusage";

  const metric = el("select");
  metric.id = "cmp-metric";
  for (const m of stored) {
    const o = el("option", null, m.unit ? `${m.name} (${m.unit})` : m.name);
    o.value = m.name;
    o.title = m.help;
    metric.append(o);
  }
  metric.value = st.metric;
  const last = el("select");
  last.id = "cmp-last";
  for (const [v, label] of LASTS) { const o = el("option", null, label); o.value = v; last.append(o); }
  last.value = String(st.last);
  const find = el("input");
  find.type = "search";
  find.id = "cmp-find";
  find.placeholder = "node name";
  find.autocomplete = "off";
  const count = el("span", "shown");
  const clear = el("button", "clear", "clear");
  clear.type = "button";
  const labelled = (text, input) => { const l = el("label", null, text); l.append(input); return l; };
  const bar = el("div", "controls cmp-controls");
  bar.append(labelled("Metric", metric), labelled("Last", last), labelled("Nodes", find), clear, count);
  const list = el("div", "cmp-list");
  list.setAttribute("role", "group");
  list.setAttribute("aria-label", `nodes to compare (at most ${MAX})`);
  const none = el("p", "nodata", "choose nodes to compare");
  const chartBox = el("div", "chart");
  chartBox.id = "cmp-chart";
  const range = el("div", "range-row");
  box.append(bar, list, none, chartBox, range);

  const span = () => st.zoom ?? [now() - st.last, now()];
  const inputs = rangeInputs(range, {
    onApply: (lo, hi) => { st.zoom = [lo, hi]; load(); },
    onReset: () => { st.zoom = null; load(); },
  });

  // the checkboxes: chosen nodes first, then those the box (or else the overview's filter) finds
  function renderList() {
    const text = find.value.trim().toLowerCase();
    const test = text ? (n) => n.name.toLowerCase().includes(text) : visible();
    const all = nodes();
    const found = all.filter((n) => !st.chosen.has(n.name) && test(n));
    const shown = all.filter((n) => st.chosen.has(n.name)).concat(found.slice(0, 200));
    list.replaceChildren(...shown.map((n) => {
      const box = el("input");
      box.type = "checkbox";
      box.value = n.name;
      box.checked = st.chosen.has(n.name);
      box.disabled = !box.checked && st.chosen.size >= MAX;
      const label = el("label", `cmp-node ${n.status}`);
      label.append(box, ` ${n.name}`);
      return label;
    }));
    count.textContent = `${st.chosen.size} of at most ${MAX} chosen` +
      (found.length > 200 ? ` (200 of ${found.length} others listed: type to find more)` : "");
  }

  list.addEventListener("change", (e) => {
    const name = e.target.value;
    if (e.target.checked) st.chosen.add(name); else st.chosen.delete(name);
    save();
    renderList();
    load();
  });
  find.addEventListener("input", renderList);
  clear.addEventListener("click", () => { st.chosen.clear(); save(); renderList(); load(); });
  metric.addEventListener("input", () => { st.metric = metric.value; save(); load(); });
  last.addEventListener("input", () => { st.last = Number(last.value); st.zoom = null; save(); load(); });

  let asked = 0;
  async function load() {
    const names = [...st.chosen].sort(new Intl.Collator(undefined, { numeric: true }).compare);
    none.hidden = names.length > 0;
    chartBox.hidden = names.length === 0;
    const [lo, hi] = span();
    inputs.show(lo, hi, st.zoom != null);
    if (!names.length || !window.uPlot) return;
    const ask = ++asked;
    // one absolute window and step for every node: their points fall in the same buckets
    const step = Math.max(1, Math.ceil((hi - lo) / 300));
    const query = `metric=${st.metric}&since=${lo}&until=${hi}&step=${step}`;
    const bodies = await Promise.all(names.map((n) =>
      fetch(`/api/nodes/${encodeURIComponent(n)}/history?${query}`)
        .then((r) => (r.ok ? r.json() : { points: [] })).catch(() => ({ points: [] }))));
    if (ask !== asked) return;       // a newer choice is on its way
    const [factor, label] = scaleOf(units.get(st.metric));
    const drawn = `${st.metric}|${names.join(",")}`;
    if (st.drawn !== drawn) {
      st.chart?.destroy();
      chartBox.replaceChildren();
      st.chart = lineChart(chartBox, names.map((n) => ({ label: n })), {
        height: 240, value: label, span,
        max: units.get(st.metric) === "ratio" ? 100 : null,
        onSelect: (a, b) => { st.zoom = [a, b]; load(); },
      });
      st.drawn = drawn;
    }
    const times = [...new Set(bodies.flatMap((b) => b.points.map((p) => p[0])))].sort((a, b) => a - b);
    const at = new Map(times.map((t, i) => [t, i]));
    const columns = bodies.map((b) => {
      const col = new Array(times.length).fill(null);
      for (const [t, v] of b.points) col[at.get(t)] = v * factor;
      return col;
    });
    setData(st.chart, [times, ...columns]);
  }

  renderList();
  load();
  // live: the window moves on, and nodes come and go
  setInterval(() => {
    if (!box.closest("details").open || box.closest("main").hidden) return;
    if (document.activeElement?.type !== "checkbox" && document.activeElement !== find) renderList();
    if (!st.zoom) load();
  }, 10000);
}
