// bramble dashboard: the cluster overview, live over the master's event stream.
import { bytes, clock, duration, el, mib, mibLabel, pct } from "/static/format.js";
import { lineChart, rangeInputs, setData } from "/static/charts.js";

const state = {
  nodes: new Map(),      // name -> NodeView from the API
  cards: new Map(),      // name -> { root, refs }, made when the cards view first shows it
  cells: new Map(),      // name -> { root, refs }, the same for the compact view
  mode: localStorage.getItem("bramble-view") === "compact" ? "compact" : "cards",
  opened: Date.now() / 1000,
  io: new Map(),         // name -> flat [ts, disk_read, disk_write, swap_in, swap_out, ...] live
  order: [],             // names in display order
  stats: null,
  offset: 0,             // server clock minus ours, seconds
  live: false,
  changes: [],
  alerts: new Map(),     // fingerprint -> AlertView (firing ones; see takeAlert)
};
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
const REBOOT_BADGE_FOR = 900;   // seconds a "rebooted" badge stays on a card
const IO_KEYS = ["disk_read", "disk_write", "swap_in", "swap_out"];
const IO_BUDGET = 200000;        // samples of live disk I/O and swap kept, all nodes together
const $ = (id) => document.getElementById(id);
let detail = null;               // the detail module, loaded on first use

function now() { return Date.now() / 1000 + state.offset; }

// --- theme -------------------------------------------------------------------------------
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem("bramble-theme"));
$("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  localStorage.setItem("bramble-theme", next);
  applyTheme(next);
});

// --- cards -------------------------------------------------------------------------------
function makeCard(name) {
  const root = el("a", "card");
  root.href = `#/node/${encodeURIComponent(name)}`;
  root.dataset.name = name;
  const head = el("div", "head");
  const badge = el("span", "badge", "up");
  const reboot = el("span", "badge rebooted", "rebooted");
  reboot.hidden = true;
  const unsigned = el("span", "badge unsigned", "unsigned");
  unsigned.title = "legacy sender: its datagrams are not signed, anyone on the LAN could send them";
  unsigned.hidden = true;
  const alerting = el("span", "badge alert", "alert");
  alerting.hidden = true;
  head.append(el("span", "name", name), badge, reboot, unsigned, alerting);
  const vals = el("div", "vals");
  const row = el("div", "gauge-row");
  const gauge = el("div", "gauge");
  const gaugeText = el("span", null, "–");
  gauge.append(gaugeText);
  gauge.setAttribute("role", "img");
  const cores = el("div", "cores");
  cores.setAttribute("role", "group");
  cores.setAttribute("aria-label", "CPU per core");
  const coresBox = el("div", "cores-box");
  coresBox.append(cores, el("span", "barlabel", "per core"));
  row.append(gauge, coresBox);
  const kv = el("dl", "kv");
  const refs = { badge, reboot, unsigned, alerting, gauge, gaugeText, cores, coreBars: [], seen: null };
  for (const [key, label] of [["temp", "temp"], ["freq", "freq"], ["load", "load"],
    ["mem", "memory"], ["net", "net in / out"], ["uptime", "uptime"]]) {
    const dd = el("dd", `v-${key}`, "–");
    kv.append(el("dt", null, label), dd);
    refs[key] = dd;
  }
  const membar = el("div", "membar");
  membar.setAttribute("role", "meter");
  membar.setAttribute("aria-label", "memory used");
  membar.setAttribute("aria-valuemin", "0");
  membar.setAttribute("aria-valuemax", "100");
  refs.memfill = el("b");
  membar.append(refs.memfill);
  refs.membar = membar;
  refs.mempct = el("span", "barvalue", "–");
  const memrow = el("div", "barrow");
  memrow.append(el("span", "barlabel", "memory"), membar, refs.mempct);
  vals.append(row, kv, memrow);
  refs.seen = el("div", "seen", "");
  root.append(head, vals, refs.seen);
  return { root, refs };
}

function updateCard(card, node) {
  const { root, refs } = card;
  const s = node.sample || {};
  const status = node.status;
  if (!root.classList.contains(status)) {
    root.classList.remove("up", "stale", "down");
    root.classList.add(status);
    refs.badge.className = `badge ${status}`;
    refs.badge.textContent = status;
  }
  const rebooted = node.rebooted_at && now() - node.rebooted_at < REBOOT_BADGE_FOR;
  refs.reboot.hidden = !rebooted;
  refs.unsigned.hidden = node.signed !== false;
  if (rebooted) refs.reboot.title = `rebooted at ${clock(node.rebooted_at)}`;
  const cpu = s.cpuusage ?? 0;
  refs.gauge.style.setProperty("--p", (cpu * 100).toFixed(1));
  refs.gaugeText.textContent = pct(cpu);
  refs.gauge.setAttribute("aria-label", `CPU ${pct(cpu)}`);
  const cores = s.cores || [];
  while (refs.coreBars.length < cores.length) {
    const bar = el("i");
    const fill = el("b");
    bar.append(fill);
    refs.cores.append(bar);
    refs.coreBars.push(fill);
  }
  cores.forEach((c, i) => {
    refs.coreBars[i].style.height = `${(c * 100).toFixed(0)}%`;
    refs.coreBars[i].parentElement.title = `core ${i}: ${pct(c)}`;
  });
  refs.temp.textContent = s.cputemp ? `${s.cputemp.toFixed(1)} °C` : "–";
  refs.freq.textContent = s.cpufreq ? `${s.cpufreq} MHz` : "–";
  refs.load.textContent = s.loadavg ? s.loadavg.map((x) => x.toFixed(2)).join(" ") : "–";
  // memory used is one of the metrics the master computes for every node (its registry)
  const { mem_used: used, mem_total: total } = node.metrics || {};
  refs.mem.textContent = total ? `${mib(used)} / ${mib(total)}` : "–";
  const memPct = total ? Math.round((used / total) * 100) : null;
  refs.memfill.style.width = memPct == null ? "0" : `${memPct}%`;
  refs.mempct.textContent = memPct == null ? "–" : `${memPct}%`;
  if (memPct == null) refs.membar.removeAttribute("aria-valuenow");
  else refs.membar.setAttribute("aria-valuenow", String(memPct));
  const r = node.rates || {};
  refs.net.textContent = `${bytes(r.net_rx, "/s")} / ${bytes(r.net_tx, "/s")}`;
  refs.uptime.textContent = duration(s.uptime);
  updateSeen(card, node);
}

function updateSeen(card, node) {
  const age = Math.max(0, now() - node.last_seen);
  const text = node.status === "up" ? `last seen ${duration(age)} ago`
    : node.status === "stale" ? `STALE: nothing for ${duration(age)}`
      : `DOWN: nothing for ${duration(age)}`;
  if (card.refs.seen.textContent !== text) card.refs.seen.textContent = text;
}

// --- filtering, sorting, summary -----------------------------------------------------------
const STATUS_RANK = { down: 0, stale: 1, up: 2 };
const collator = new Intl.Collator(undefined, { numeric: true });
const byName = (a, b) => collator.compare(a.name, b.name);
const sorters = {
  name: byName,
  status: (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] || byName(a, b),
  cpu: (a, b) => (b.sample?.cpuusage ?? -1) - (a.sample?.cpuusage ?? -1) || byName(a, b),
  temp: (a, b) => (b.sample?.cputemp ?? -1) - (a.sample?.cputemp ?? -1) || byName(a, b),
  mem: (a, b) => memFraction(b) - memFraction(a) || byName(a, b),
};
function memFraction(node) {
  const m = node.metrics;
  return m && m.mem_total ? m.mem_used / m.mem_total : -1;
}

// A test of whether a node passes the filter and status boxes (read once per layout).
function visibility() {
  const text = $("filter").value.trim().toLowerCase();
  const wanted = $("status-filter").value;
  const alerting = wanted === "problem" ? new Set([...state.alerts.values()].map((a) => a.node)) : null;
  return (node) => {
    if (text && !node.name.toLowerCase().includes(text)) return false;
    if (wanted === "problem") return node.status !== "up" || alerting.has(node.name);
    return !wanted || node.status === wanted;
  };
}

// The nodes' elements of the current view (cards or compact cells), made on first need.
function items() { return state.mode === "compact" ? state.cells : state.cards; }
function itemOf(name) {
  const map = items();
  let item = map.get(name);
  if (!item) {
    item = state.mode === "compact" ? makeCell(name) : makeCard(name);
    map.set(name, item);
  }
  return item;
}
function update(item, node) {
  if (state.mode === "compact") updateCell(item, node); else updateCard(item, node);
}

function layout() {
  const key = $("sort").value;
  // by name the order changes only when nodes come or go: no sort on every update then
  const same = key === "name" && state.order.length === state.nodes.size && state.orderKey === key;
  const nodes = same ? state.order.map((n) => state.nodes.get(n))
    : [...state.nodes.values()].sort(sorters[key] || byName);
  const box = state.mode === "compact" ? $("compact") : $("grid");
  const names = same ? state.order : nodes.map((n) => n.name);
  const reorder = !same || state.laidOut !== state.mode || box.childElementCount !== names.length ||
    names.some((n, i) => n !== state.order[i]);
  const test = visibility();
  let shown = 0;
  const list = [];
  for (const node of nodes) {
    const item = itemOf(node.name);
    const show = test(node);
    if (item.root.hidden === show) item.root.hidden = !show;
    if (show) shown += 1;
    if (reorder) list.push(item.root);
  }
  if (reorder) box.replaceChildren(...list);
  state.order = names;
  state.orderKey = key;
  state.laidOut = state.mode;
  const text = `${shown} of ${nodes.length} nodes shown`;
  if ($("shown").textContent !== text) $("shown").textContent = text;
}

// --- compact view: a cell per node, coloured by CPU, temperature or memory -------------------
const LEVELS = {   // [amber from, red from]
  cpu: [0.75, 0.9], temp: [70, 80], mem: [85, 95],
};
function level(kind, v) {
  if (v == null || !Number.isFinite(v)) return -1;
  const [warn, crit] = LEVELS[kind];
  return v >= crit ? 2 : v >= warn ? 1 : 0;
}

function makeCell(name) {
  const root = el("a", "cell");
  root.href = `#/node/${encodeURIComponent(name)}`;
  root.dataset.name = name;
  const refs = { name: el("span", "cn", name), vals: el("span", "cv", "–"), alert: el("i", "ab", "!") };
  refs.alert.hidden = true;
  root.append(refs.alert, refs.name, refs.vals);   // the badge floats right of the name
  return { root, refs, cls: "", alerting: false };
}

function updateCell(cell, node) {
  const s = node.sample || {};
  const m = node.metrics || {};
  const cpu = s.cpuusage;
  const temp = s.cputemp > 0 ? s.cputemp : null;
  const mem = m.mem_total ? (m.mem_used / m.mem_total) * 100 : null;
  const text = `${cpu == null ? "–" : Math.round(cpu * 100)}% ${temp == null ? "–" : Math.round(temp)}° ${
    mem == null ? "–" : Math.round(mem)}%`;
  if (cell.refs.vals.textContent !== text) cell.refs.vals.textContent = text;
  const by = $("colour-by").value;
  const levels = { cpu: level("cpu", cpu), temp: level("temp", temp), mem: level("mem", mem) };
  const lv = by === "worst" ? Math.max(levels.cpu, levels.temp, levels.mem) : levels[by];
  const cls = `cell ${node.status} l${Math.max(lv, 0)}${cell.alerting ? " alerting" : ""}`;
  if (cell.cls !== cls) { cell.root.className = cls; cell.cls = cls; }
}

// the full figures of a cell as its tooltip, made when the pointer comes to it
$("compact").addEventListener("mouseover", (e) => {
  const cell = e.target.closest(".cell");
  const node = cell && state.nodes.get(cell.dataset.name);
  if (!node) return;
  const s = node.sample || {};
  const m = node.metrics || {};
  const lines = [`${node.name}: ${node.status}`, `CPU ${pct(s.cpuusage)}`,
    `temperature ${s.cputemp > 0 ? `${s.cputemp.toFixed(1)} °C` : "–"}`,
    `memory ${m.mem_total ? `${mib(m.mem_used)} of ${mib(m.mem_total)}` : "–"}`,
    `last seen ${duration(Math.max(0, now() - node.last_seen))} ago`,
    ...alertsOf(node.name).map((a) => `alert: ${a.severity} ${a.rule} (${a.condition})`)];
  cell.title = lines.join("\n");
});

function setMode(mode) {
  state.mode = mode;
  localStorage.setItem("bramble-view", mode);
  const compact = mode === "compact";
  document.body.classList.toggle("compact-mode", compact);
  $("grid").hidden = compact;
  $("compact").hidden = !compact;
  $("compact-key").hidden = !compact;
  $("colour-by-box").hidden = !compact;
  for (const b of document.querySelectorAll(".view-switch button")) {
    b.setAttribute("aria-pressed", String(b.dataset.view === mode));
  }
  // the view's elements catch up with what came while the other view showed
  for (const node of state.nodes.values()) update(itemOf(node.name), node);
  layout();
  renderAlerts();
}
for (const b of document.querySelectorAll(".view-switch button")) {
  b.addEventListener("click", () => { if (b.dataset.view !== state.mode) setMode(b.dataset.view); });
}
$("colour-by").addEventListener("input", () => {
  for (const [name, cell] of state.cells) updateCell(cell, state.nodes.get(name));
});

function summary() {
  let up = 0, stale = 0, down = 0, cores = 0, busy = 0, cpuSum = 0, cpuN = 0, used = 0, total = 0;
  let hottest = null;
  for (const node of state.nodes.values()) {
    if (node.status === "up") up += 1; else if (node.status === "stale") stale += 1; else down += 1;
    const s = node.sample;
    if (!s || node.status !== "up") continue;
    const n = (s.cores || []).length || 1;
    cores += n;
    busy += s.cpuusage * n;
    cpuSum += s.cpuusage; cpuN += 1;
    const m = node.metrics || {};
    if (m.mem_total) { used += m.mem_used; total += m.mem_total; }
    if (s.cputemp && (!hottest || s.cputemp > hottest.sample.cputemp)) hottest = node;
  }
  $("s-up").textContent = up; $("s-stale").textContent = stale; $("s-down").textContent = down;
  $("s-cores").textContent = cores ? `${busy.toFixed(1)} of ${cores}` : "–";
  $("s-cpu").textContent = cpuN ? pct(cpuSum / cpuN) : "–";
  $("s-mem").textContent = total ? usedOfTotal(used, total) : "–";
  $("s-hot").textContent = hottest ? `${hottest.name} ${hottest.sample.cputemp.toFixed(1)} °C` : "–";
  $("s-rate").textContent = state.stats ? `${state.stats.rate.toFixed(1)}/s` : "–";
  // when history was last written to disk: what a power cut would lose comes after it
  const saved = state.stats && state.stats.history_flushed;
  $("s-saved").textContent = saved ? `${Math.max(0, Math.round(now() - saved))} s ago` : "not yet";
}

// "4.5 of 70.6 GiB": memory used of total (kB), in the total's unit.
function usedOfTotal(usedKb, totalKb) {
  const GiB = 1024 * 1024;
  if (totalKb < GiB) return `${Math.round(usedKb / 1024)} of ${Math.round(totalKb / 1024)} MiB`;
  return `${(usedKb / GiB).toFixed(1)} of ${(totalKb / GiB).toFixed(1)} GiB`;
}

// Updates are drawn in batches, at most one per (1 ms x nodes, up to 1 s): with 1,000 nodes
// at 1 Hz the page lays out and paints once a second rather than ten times, and a handful of
// nodes still show each heartbeat at once.
const dirty = new Set();
let flushTimer = null;
let lastFlush = 0;

function applyNodes(views, atOnce = false) {
  for (const view of views) {
    state.nodes.set(view.name, view);
    dirty.add(view.name);
    keepIo(view);
  }
  if (detail) detail.onNodes(views);
  if (atOnce) flush();
  else if (flushTimer === null) {
    const wait = Math.max(0, lastFlush + Math.min(1000, state.nodes.size) - performance.now());
    flushTimer = setTimeout(() => requestAnimationFrame(flush), wait);
  }
}

function flush() {
  clearTimeout(flushTimer);
  flushTimer = null;
  lastFlush = performance.now();
  let added = false;
  for (const name of dirty) {
    const node = state.nodes.get(name);
    if (!node) continue;
    added ||= !items().has(name);
    update(itemOf(name), node);
  }
  dirty.clear();
  layout();
  summary();
  if (added && state.alerts.size) renderAlerts();
}

// Disk I/O and swap are not in history: the detail view charts what came since the page opened.
function keepIo(view) {
  const m = view.metrics;
  const s = view.sample;
  if (!m || !s || !IO_KEYS.some((k) => k in m)) return;
  let flat = state.io.get(view.name);
  if (!flat) { flat = []; state.io.set(view.name, flat); }
  if (flat.length && flat[flat.length - 5] >= s.ts) return;
  flat.push(s.ts, ...IO_KEYS.map((k) => m[k] ?? null));
  const most = 5 * Math.max(60, Math.floor(IO_BUDGET / Math.max(1, state.io.size)));
  if (flat.length > most + 500) flat.splice(0, flat.length - most);
}

// --- alerts: a banner for the firing ones, a badge on each card that has any ----------------
function alertsOf(name) {
  return [...state.alerts.values()].filter((a) => a.node === name);
}

function worst(alerts) {
  return alerts.reduce((w, a) => (SEVERITY_RANK[a.severity] < SEVERITY_RANK[w] ? a.severity : w),
    "info");
}

function takeAlert(alert) {
  if (alert.state === "firing") state.alerts.set(alert.fingerprint, alert);
  else state.alerts.delete(alert.fingerprint);
}

function renderAlerts() {
  const firing = [...state.alerts.values()].sort((a, b) =>
    SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || byName(
      { name: a.node }, { name: b.node }));
  const loud = firing.filter((a) => !a.silenced);
  const quiet = firing.length - loud.length;
  const banner = $("alerts");
  banner.hidden = loud.length === 0;
  banner.className = `banner alerts ${worst(loud)}`;
  const parts = [el("span", null,
    `${loud.length} alert${loud.length === 1 ? "" : "s"} firing: `)];
  loud.slice(0, 5).forEach((a, i) => {
    const item = el("span", "alert-item", `${a.rule} on ${a.node} (${a.condition})`);
    const mute = el("button", "silence", "silence 1 h");
    mute.type = "button";
    mute.title = `stop notifications of ${a.rule} on ${a.node} for an hour (admin token)`;
    mute.addEventListener("click", () => silence(a));
    parts.push(...(i ? [el("span", null, "; ")] : []), item, mute);
  });
  if (loud.length > 5) parts.push(el("span", null, `; and ${loud.length - 5} more`));
  if (quiet) parts.push(el("span", "quiet", ` (${quiet} silenced)`));
  banner.replaceChildren(...(loud.length ? parts : []));
  const byNode = new Map();
  for (const a of firing) {
    if (!byNode.has(a.node)) byNode.set(a.node, []);
    byNode.get(a.node).push(a);
  }
  if (state.mode === "compact") {
    for (const [name, cell] of state.cells) {
      const mine = byNode.get(name) || [];
      const badge = cell.refs.alert;
      badge.hidden = mine.length === 0;
      if (cell.alerting !== mine.length > 0) {
        cell.alerting = mine.length > 0;
        cell.root.classList.toggle("alerting", cell.alerting);
        cell.cls = cell.root.className;
      }
      if (!mine.length) continue;
      const muted = mine.every((a) => a.silenced);
      badge.className = `ab ${worst(mine)}${muted ? " silenced" : ""}`;
      badge.textContent = mine.length === 1 ? "!" : String(mine.length);
    }
    return;
  }
  for (const [name, card] of state.cards) {
    const mine = byNode.get(name) || [];
    const badge = card.refs.alerting;
    badge.hidden = mine.length === 0;
    if (!mine.length) continue;
    const muted = mine.every((a) => a.silenced);
    badge.className = `badge alert ${worst(mine)}${muted ? " silenced" : ""}`;
    badge.textContent = mine.length === 1 ? mine[0].rule.replace(/_/g, " ") : `${mine.length} alerts`;
    badge.title = mine.map((a) => `${a.severity}: ${a.rule} (${a.condition}) ${a.summary}` +
      (a.silenced ? " [silenced]" : "")).join("\n");
  }
}

// Silencing needs the admin token: asked once, kept for this tab only (sessionStorage).
const TOKEN_KEY = "bramble-admin-token";
async function silence(alert) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = prompt("Admin token ([admin] token in bramble.secrets.toml) to silence alerts:");
    if (!token) return;
  }
  const response = await fetch("/api/silences", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token.trim()}` },
    body: JSON.stringify({ rule: alert.rule, node: alert.node, duration: "1h",
      comment: "from the dashboard" }),
  });
  if (!response.ok) {
    if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    window.alert(response.status === 401 ? "That is not the admin token."
      : `Could not silence: HTTP ${response.status}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  const alerts = await fetch("/api/alerts").then((r) => r.json());
  state.alerts.clear();
  for (const a of alerts) takeAlert(a);
  renderAlerts();
}

// --- events list -------------------------------------------------------------------------
function renderChanges() {
  const list = $("events");
  list.replaceChildren(...state.changes.slice(0, 60).map((c) => {
    const li = el("li");
    const t = el("time", null, clock(c.ts));
    t.dateTime = new Date(c.ts * 1000).toISOString();
    li.append(t, el("span", `kind ${c.kind}`, c.kind), el("span", null, c.message));
    return li;
  }));
}

// --- cluster charts ------------------------------------------------------------------------
// The last hour, however short the master's history is yet; or the window chosen by dragging
// across a chart or in the from/to inputs (zoom), until reset.
const clusterCharts = { zoom: null };
const clusterSpan = () => clusterCharts.zoom ?? [now() - 3600, now()];
const clusterRange = rangeInputs($("c-range"), {
  onApply: (lo, hi) => { clusterCharts.zoom = [lo, hi]; refreshClusterCharts(true); },
  onReset: () => { clusterCharts.zoom = null; refreshClusterCharts(true); },
});
async function refreshClusterCharts(force = false) {
  if (!window.uPlot || !state.live || !$("detail").hidden) return;
  if (clusterCharts.zoom && clusterCharts.cpu && !force) return;   // a fixed window: no news
  const [lo, hi] = clusterSpan();
  const query = clusterCharts.zoom ? `since=${lo}&until=${hi}` : "since=-3600";
  try {
    const [cpu, mem] = await Promise.all(["cpuusage", "mem_used"].map((m) =>
      fetch(`/api/cluster/history?metric=${m}&${query}`).then((r) => r.json())));
    const opts = { span: clusterSpan,
      onSelect: (a, b) => { clusterCharts.zoom = [a, b]; refreshClusterCharts(true); } };
    clusterCharts.cpu ??= lineChart($("c-cpu"), [{ label: "CPU", color: "--cpu" }],
      { max: 100, value: (v) => `${v.toFixed(0)}%`, ...opts });
    clusterCharts.mem ??= lineChart($("c-mem"), [{ label: "used", color: "--mem" }],
      { value: (v) => mibLabel(v / 1024), ...opts });
    setData(clusterCharts.cpu, [cpu.points.map((p) => p[0]), cpu.points.map((p) => p[1] * 100)]);
    setData(clusterCharts.mem, [mem.points.map((p) => p[0]), mem.points.map((p) => p[1])]);
    clusterRange.show(...clusterSpan(), clusterCharts.zoom != null);
  } catch (err) {
    // the stream's error handling shows the connection state; the charts retry next round
  }
}

// --- the event stream ------------------------------------------------------------------------
function setLive(live) {
  state.live = live;
  document.body.classList.toggle("offline", !live);
  $("banner").hidden = live;
}

function takeStats(stats) {
  state.stats = stats;
  if (stats && stats.now) state.offset = stats.now - Date.now() / 1000;
  // what does not work in the master itself (history on a full disk, ...): see /api/health
  const problems = (stats && stats.problems) || [];
  $("trouble").hidden = problems.length === 0;
  $("trouble").textContent = problems.length ? `master: ${problems.join("; ")}` : "";
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    setLive(true);
    takeStats(snap.stats);
    const names = new Set(snap.nodes.map((n) => n.name));
    for (const name of [...state.nodes.keys()]) {
      if (!names.has(name)) {
        state.nodes.delete(name);
        for (const map of [state.cards, state.cells]) {
          map.get(name)?.root.remove();
          map.delete(name);
        }
        state.io.delete(name);
      }
    }
    applyNodes(snap.nodes, true);
    state.alerts.clear();
    for (const alert of snap.alerts || []) takeAlert(alert);
    renderAlerts();
    state.changes = snap.changes || [];
    renderChanges();
    refreshClusterCharts();
  });
  source.addEventListener("nodes", (e) => applyNodes(JSON.parse(e.data)));
  source.addEventListener("alert", (e) => {
    takeAlert(JSON.parse(e.data));
    renderAlerts();
    layout();
  });
  source.addEventListener("change", (e) => {
    state.changes.unshift(JSON.parse(e.data));
    state.changes.length = Math.min(state.changes.length, 200);
    renderChanges();
  });
  source.addEventListener("stats", (e) => {
    takeStats(JSON.parse(e.data));
    summary();
  });
  source.onerror = () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, 2000);
    }
  };
}

// Ages tick every second from the server's clock.
setInterval(() => {
  if (state.mode !== "cards") return;
  for (const [name, card] of state.cards) updateSeen(card, state.nodes.get(name));
}, 1000);
setInterval(refreshClusterCharts, 15000);

// --- routing and keys ------------------------------------------------------------------------
async function route() {
  const match = location.hash.match(/^#\/node\/(.+)$/);
  if (match) {
    detail ??= await import("/static/detail.js");
    $("overview").hidden = true;
    $("detail").hidden = false;
    detail.show(decodeURIComponent(match[1]), state);
    $("detail").querySelector(".back").focus();
  } else {
    if (detail) detail.hide();
    $("detail").hidden = true;
    $("overview").hidden = false;
    refreshClusterCharts();
  }
}
addEventListener("hashchange", route);
addEventListener("keydown", (e) => {
  if (e.key === "Escape" && location.hash.startsWith("#/node/")) location.hash = "#/";
  if (e.key === "/" && document.activeElement.tagName !== "INPUT") {
    e.preventDefault();
    $("filter").focus();
  }
});
for (const id of ["filter", "status-filter", "sort"]) $(id).addEventListener("input", layout);

// --- compare nodes on one chart (its module loads when the panel first opens) ----------------
$("compare").addEventListener("toggle", () => {
  if (!$("compare").open || state.compare) return;
  state.compare = import("/static/compare.js").then((m) => m.mountCompare($("compare-body"), {
    nodes: () => [...state.nodes.values()].sort(byName), visible: visibility, now }));
});

// --- the jobs panel (present when the master serves the jobs API) ---------------------------
import("/static/jobs.js")
  .then((m) => m.mountJobsPanel($("jobs")))
  .catch(() => { document.querySelector(".jobs-panel").hidden = true; });

if (state.mode === "compact") setMode("compact");
connect();
route();
