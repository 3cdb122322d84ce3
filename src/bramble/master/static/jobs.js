// bramble jobs panel: a self-contained ES module.
//   import { mountJobsPanel } from "/static/jobs.js";
//   const stop = mountJobsPanel(document.getElementById("jobs"));
// Shows the newest jobs (state, file, submitter, duration, exit), the Dask workers with their
// running task counts, and a link to Dask's own dashboard. Reads /api/jobs and
// /api/jobs/cluster every `interval` ms; needs no token (reading is open).

const STATE_COLOURS = {
  queued: "#8a8a8a", running: "#2f7de1", done: "#2e9d4f", failed: "#d23c3c", cancelled: "#b58a1b",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function duration(job) {
  const s = job.duration_s;
  if (s == null) return "–";
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

function basename(path) {
  return path.split("/").pop();
}

function jobsTable(jobs) {
  const head = el("tr", {}, ...["id", "state", "job", "submitter", "duration", "exit"].map((h) => el("th", {}, h)));
  const rows = jobs.map((j) => el("tr", {},
    el("td", {}, j.id),
    el("td", {}, el("span", { style: `color:${STATE_COLOURS[j.state] || "inherit"};font-weight:600` }, j.state)),
    el("td", { title: `${j.file} ${j.args.join(" ")}` }, `${basename(j.file)} ${j.args.join(" ")}`),
    el("td", {}, j.submitter),
    el("td", {}, duration(j)),
    el("td", {}, j.exit_status == null ? "–" : j.exit_status)));
  // in a box of its own that scrolls sideways, so a narrow screen never scrolls the page
  return el("div", { class: "table-scroll" },
    el("table", { class: "bramble-jobs" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

const natural = (a, b) => a.name.localeCompare(b.name, undefined, { numeric: true });

function workersList(cluster) {
  if (cluster.error) return el("p", { class: "bramble-jobs-error" }, `scheduler: ${cluster.error}`);
  const items = [...cluster.workers].sort(natural).map((w) => {
    const busy = Math.round(100 * Math.min(1, w.executing / Math.max(1, w.nthreads)));
    const bar = el("span", {
      class: "busybar", role: "meter", "aria-label": `${w.name} threads busy`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(busy),
    }, el("b", { style: `width:${busy}%` }));
    return el("li", { title: w.address },
      `${w.name}: ${w.executing}/${w.nthreads} running, ${w.in_memory} in memory `,
      el("span", { class: "barlabel" }, "busy"), bar, el("span", { class: "barvalue" }, `${busy}%`));
  });
  return el("ul", { class: "bramble-workers" }, ...items);
}

class Unavailable extends Error {}

// The JSON at URL; Unavailable with the master's reason when it answers with an error (a
// network failure, the master unreachable, is the fetch's own TypeError).
async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let why = `HTTP ${response.status}`;
    try { why = (await response.json()).detail || why; } catch { /* not JSON */ }
    throw new Unavailable(`jobs: ${why}`);
  }
  return response.json();
}

export function mountJobsPanel(container, { interval = 2000, limit = 15 } = {}) {
  let timer = null;
  let stopped = false;
  async function refresh() {
    try {
      const [jobs, cluster] = await Promise.all([
        getJson(`/api/jobs?limit=${limit}`), getJson("/api/jobs/cluster")]);
      const link = cluster.error ? ""
        : cluster.dashboard_url
          ? el("a", { href: cluster.dashboard_url, target: "_blank", rel: "noopener" }, "Dask dashboard")
          : el("span", { style: "color:var(--muted)" }, "Dask dashboard off (pip install 'bramble-cluster[dask-dashboard]' on the master)");
      container.replaceChildren(
        el("h2", {}, "Jobs"),
        el("p", {}, `scheduler ${cluster.scheduler}`, ...(link ? [" · ", link] : [])),
        workersList(cluster),
        jobs.length ? jobsTable(jobs) : el("p", {}, "No jobs yet: bramble run FILE"));
    } catch (err) {
      container.replaceChildren(el("h2", {}, "Jobs"),
        el("p", { class: "bramble-jobs-error" }, err instanceof Unavailable ? err.message
          : "cannot reach the master: retrying"));
    }
    if (!stopped) timer = setTimeout(refresh, interval);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
