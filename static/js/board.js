// The consultation board's live status (server: board/consumers.py, /ws/praxis/).
//
// The page is rendered with each appointment's stored status; this script only fills in
// what the server pushes over one WebSocket (a `row` per change, never polled) and lets
// the waiting minutes count on locally. Labels come translated in data-label-* attributes.

const root = document.querySelector("[data-board]");
// Close codes as the server defines them (redconnect/callcodes.py), handed in by the page.
const CLOSE = JSON.parse(document.getElementById("rc-codes").textContent).close;
const rows = new Map(
  Array.from(root.querySelectorAll("tr[data-appointment]"), (row) => [row.dataset.appointment, row]),
);
const live = new Map(); // appointment id → last row message
const FINAL = new Set(["cancelled", "expired"]);
const MINUTE_TICK_MS = 15000;
let clockOffset = 0; // server time − local time, from the server's `now`
let attempt = 0;

function label(key, values = {}) {
  const format = root.getAttribute(`data-label-${key}`) || key;
  return format.replace(/%\((\w+)\)s/g, (_m, name) => String(values[name] ?? ""));
}

function minutesSince(ms) {
  return Math.max(0, Math.floor((Date.now() + clockOffset - ms) / 60000));
}

function announce(text) {
  const region = root.querySelector('[data-role="announce"]');
  region.textContent = "";
  // A fresh text node makes screen readers announce the same sentence again.
  window.setTimeout(() => (region.textContent = text), 50);
}

function render(row, message) {
  let status = message.status;
  const expires = Number(row.dataset.expires) * 1000;
  if (!FINAL.has(status) && expires && Date.now() + clockOffset >= expires) status = "expired";
  row.dataset.status = status;
  row.querySelector('[data-role="label"]').textContent =
    status === "waiting" ? label("waiting", { minutes: minutesSince(message.since) }) : label(status);
  row.querySelector('[data-role="names"]').textContent = (message.waiting || []).join(", ");
  if (FINAL.has(status)) {
    for (const form of row.querySelectorAll("form")) {
      for (const control of form.elements) control.disabled = true;
    }
  }
}

function onRow(message) {
  const row = rows.get(message.id);
  if (!row) return;
  const before = live.get(message.id);
  live.set(message.id, message);
  render(row, message);
  const names = (message.waiting || []).join(", ");
  const earlier = new Set(before ? before.waiting || [] : []);
  if (names && (message.waiting || []).some((name) => !earlier.has(name))) {
    announce(label("arrived", { names, time: row.dataset.time, doctor: row.dataset.doctor }));
  } else if (before && before.status === "waiting" && message.status === "scheduled") {
    announce(label("left", { names: (before.waiting || []).join(", ") }));
  }
}

function onMessage(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  if (typeof message.now === "number") clockOffset = message.now - Date.now();
  if (message.type === "row") onRow(message);
  else if (message.type === "reload") window.location.reload();
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${window.location.host}${root.dataset.wsPath}`);
  root.dataset.wsState = "connecting";
  socket.addEventListener("open", () => {
    attempt = 0;
    root.dataset.wsState = "open";
    root.querySelector('[data-role="live-note"]').hidden = true;
  });
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", (event) => {
    root.dataset.wsState = "closed";
    if (event.code === CLOSE.NOT_ALLOWED) return; // logged out or no longer a member: reloading shows why
    const note = root.querySelector('[data-role="live-note"]');
    note.textContent = label("offline");
    note.hidden = false;
    // Exponential back-off with jitter: a server restart must not cause a reconnect storm.
    const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    attempt += 1;
    window.setTimeout(connect, delay);
  });
}

// Waiting minutes and expiry count on locally; nothing is fetched for that.
window.setInterval(() => {
  for (const [id, message] of live) render(rows.get(id), message);
}, MINUTE_TICK_MS);

connect();
