// Boards waiting to enroll, on the overview: each with Approve and Refuse, for the admin.
// Listing and deciding need the admin token, asked once and kept for this tab in the same
// place as the alerts' silence button keeps it (sessionStorage "bramble-admin-token"), so
// the admin gives it once for both. Without it, the public events say that boards wait.
import { clock, el } from "/static/format.js";

const TOKEN_KEY = "bramble-admin-token";
const MAC = /\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b/;
const TRUST = new Set(["pending", "enrolled", "refused", "revoked"]);
const box = document.getElementById("enrolling");

const token = () => sessionStorage.getItem(TOKEN_KEY);

function askToken(why) {
  const given = prompt(`Admin token ([admin] token in bramble.secrets.toml) to ${why}:`);
  return given ? given.trim() : null;
}

function admin(path, tok, body) {
  const headers = { Authorization: `Bearer ${tok}` };
  if (body === undefined) return fetch(path, { headers });
  headers["Content-Type"] = "application/json";
  return fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
}

// MACs whose latest enrollment event is a request left waiting (events are newest first).
function waitingMacs(changes) {
  const latest = new Map();
  for (const c of changes) {
    const mac = TRUST.has(c.kind) && (c.message.match(MAC) || [])[0];
    if (mac && !latest.has(mac)) latest.set(mac, c.kind);
  }
  return [...latest].filter(([, kind]) => kind === "pending").map(([mac]) => mac);
}

function showHint(count) {
  box.hidden = count === 0;
  if (!count) return box.replaceChildren();
  const review = el("button", "trust-review", "review (admin token)");
  review.type = "button";
  review.addEventListener("click", () => load(askToken("approve boards")));
  box.replaceChildren(el("span", null,
    `${count} board${count === 1 ? "" : "s"} waiting to enroll `), review);
}

function row(p, tok) {
  const li = el("li", "trust-request");
  li.dataset.mac = p.mac;
  const name = el("input", "trust-name");
  name.value = p.name;
  name.placeholder = "name";
  name.setAttribute("aria-label", `name for ${p.mac}`);
  const yes = el("button", "trust-approve", "Approve");
  const no = el("button", "trust-refuse", "Refuse");
  yes.type = no.type = "button";
  yes.addEventListener("click", () =>
    decide(tok, "/api/trust/approve", { who: p.mac, name: name.value.trim() || null }));
  no.addEventListener("click", () => decide(tok, "/api/trust/refuse", { who: p.mac }));
  const when = el("time", null, clock(p.asked));
  when.dateTime = new Date(p.asked * 1000).toISOString();
  li.append(el("code", null, p.mac), name, el("span", "trust-from", `from ${p.address}`),
    when, el("span", "trust-why", p.reason), yes, no);
  return li;
}

function showList(pending, tok) {
  box.hidden = pending.length === 0;
  if (!pending.length) return box.replaceChildren();
  const list = el("ol", "trust-list");
  list.append(...pending.map((p) => row(p, tok)));
  box.replaceChildren(el("span", null,
    `${pending.length} board${pending.length === 1 ? "" : "s"} waiting to enroll:`), list);
}

async function decide(tok, path, body) {
  const answer = await admin(path, tok, body);
  if (!answer.ok) {
    const why = await answer.json().then((j) => j.detail, () => "");
    window.alert(`Could not do it: ${typeof why === "string" && why ? why : `HTTP ${answer.status}`}`);
  }
  await load(tok);
}

// The waiting requests with TOK (kept when it works, forgotten when refused).
async function load(tok) {
  if (!tok) return;
  const answer = await admin("/api/trust/pending", tok);
  if (answer.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    window.alert("That is not the admin token.");
    return;
  }
  if (!answer.ok) return;
  sessionStorage.setItem(TOKEN_KEY, tok);
  showList(await answer.json(), tok);
}

async function refresh() {
  try {
    const tok = token();
    if (tok) {
      const answer = await admin("/api/trust/pending", tok);
      if (answer.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      else if (answer.ok && !box.contains(document.activeElement)) {
        showList(await answer.json(), tok);  // not while the admin types a name
      }
      return;
    }
    const changes = await fetch("/api/changes?limit=100").then((r) => r.json());
    showHint(waitingMacs(changes).length);
  } catch {
    // the master is away: the connection banner says so; try again at the next round
  } finally {
    setTimeout(refresh, token() ? 3000 : 10000);
  }
}

if (box) refresh();
