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
  return el("table", { class: "bramble-jobs" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function workersList(cluster) {
  if (cluster.error) return el("p", { class: "bramble-jobs-error" }, `scheduler: ${cluster.error}`);
  const items = cluster.workers.map((w) => {
    const busy = Math.min(1, w.executing / Math.max(1, w.nthreads));
    return el("li", { title: w.address },
      `${w.name}: ${w.executing}/${w.nthreads} running, ${w.in_memory} in memory `,
      el("span", { style: `display:inline-block;width:60px;height:8px;background:#ddd;vertical-align:middle` },
        el("span", { style: `display:block;height:8px;width:${Math.round(busy * 60)}px;background:#2f7de1` })));
  });
  return el("ul", { class: "bramble-workers" }, ...items);
}

export function mountJobsPanel(container, { interval = 2000, limit = 15 } = {}) {
  let timer = null;
  let stopped = false;
  async function refresh() {
    try {
      const [jobs, cluster] = await Promise.all([
        fetch(`/api/jobs?limit=${limit}`).then((r) => r.json()),
        fetch("/api/jobs/cluster").then((r) => r.json()),
      ]);
      const link = cluster.dashboard_url
        ? el("a", { href: cluster.dashboard_url, target: "_blank", rel: "noopener" }, "Dask dashboard")
        : el("span", { style: "color:var(--muted)" }, "Dask dashboard off (pip install 'bramble-cluster[dask-dashboard]' on the master)");
      container.replaceChildren(
        el("h2", {}, "Jobs"),
        el("p", {}, `scheduler ${cluster.scheduler} · `, link),
        workersList(cluster),
        jobs.length ? jobsTable(jobs) : el("p", {}, "No jobs yet: bramble run FILE"));
    } catch (err) {
      container.replaceChildren(el("h2", {}, "Jobs"), el("p", {}, `jobs API unavailable (${err})`));
    }
    if (!stopped) timer = setTimeout(refresh, interval);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
