// Small formatting helpers shared by the overview and the detail view.

export function pct(x) {
  return x == null ? "–" : `${(x * 100).toFixed(x >= 0.995 ? 0 : 1)}%`;
}

export function bytes(n, suffix = "") {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}${suffix}`;
}

export function mib(kb) {
  if (kb == null) return "–";
  return kb >= 1024 * 1024 ? `${(kb / 1048576).toFixed(1)} GiB` : `${Math.round(kb / 1024)} MiB`;
}

export function duration(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.max(0, s);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function clock(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}
