// Signaling client for the WebSocket at /ws/call/ (protocol: docs, shared CONTRACT).
//
// The server only brokers the connection: it relays offer/answer/candidate between the
// two admitted participants. Media never passes through it, so a lost WebSocket does
// not end a running call — we simply reconnect with exponential back-off.
// The protocol's close codes, error codes and message types have one home on the server
// (redconnect/callcodes.py); the call page hands them in as JSON (#rc-codes) so that
// they are never typed twice. Close codes "final" (no valid session, not allowed,
// superseded by another window) end the call: reconnecting could not help, the page
// explains instead.
export const CODES = readCodes();
export const ERRORS = CODES.error;
export const TYPES = CODES.type;

export const CLOSE_EXPIRED = CODES.close.NO_SESSION;
export const CLOSE_FORBIDDEN = CODES.close.NOT_ALLOWED;
export const CLOSE_SUPERSEDED = CODES.close.SUPERSEDED;
export const CLOSE_RATE_LIMITED = CODES.close.RATE_LIMIT;
// The server is up but its channel layer (Redis) is not: it asks us to try again soon.
export const CLOSE_TRY_AGAIN = CODES.close.TRY_AGAIN;

const FINAL_CODES = new Set(CODES.final);
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;
// After a rate-limit close the server's window is 10 s; wait it out before retrying.
const RATE_LIMIT_DELAY_MS = 11000;
// While the server answers "try again", keep polling briefly so that signaling is back
// within seconds of Redis returning, however long the outage lasted.
const TRY_AGAIN_MAX_DELAY_MS = 2000;

/** The table the page rendered with json_script; without it the page cannot work. */
function readCodes() {
  const element = globalThis.document?.getElementById("rc-codes");
  if (!element) throw new Error("the call page lacks the protocol table #rc-codes");
  return JSON.parse(element.textContent);
}

/**
 * The WebSocket URL (ws or wss) of a path on the page's own origin, never another.
 * `query` is the routing key the page rendered (data-ws-query, e.g. "r=1a2b3c4d"): the
 * same for every participant of the appointment, so nginx puts them all on one server
 * process (docs/deployment.md). The server ignores it; without it the call still works.
 */
export function socketUrl(path, query = "") {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}${query ? `?${query}` : ""}`;
}

/**
 * Events:
 *  - "state":   detail {state: "connecting" | "open" | "retrying" | "closed", code, delay}
 *  - "message": detail = the parsed server message (an object with a `type`)
 */
export class Signaling extends EventTarget {
  constructor(path, query = "") {
    super();
    this.url = socketUrl(path, query);
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    // Reconnect at once when the network comes back instead of waiting for the timer.
    window.addEventListener("online", () => this.retryNow());
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.timer = null;
    this.emitState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => this.emitState("open"));
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", (event) => this.onClose(socket, event.code));
  }

  onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return; // the server only sends JSON; anything else is ignored
    }
    if (!message || typeof message.type !== "string") return;
    // A welcome proves the session is accepted: only now reset the back-off, so a
    // server that accepts and closes at once cannot make us reconnect in a tight loop.
    if (message.type === TYPES.WELCOME) this.attempt = 0;
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  onClose(socket, code) {
    if (socket !== this.socket) return; // an old socket we already replaced
    this.socket = null;
    if (this.stopped) return;
    if (FINAL_CODES.has(code)) {
      this.stopped = true;
      this.emitState("closed", { code });
      return;
    }
    const delay = this.nextDelay(code);
    this.emitState("retrying", { code, delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  nextDelay(code) {
    if (code === CLOSE_RATE_LIMITED) return RATE_LIMIT_DELAY_MS;
    const cap = code === CLOSE_TRY_AGAIN ? TRY_AGAIN_MAX_DELAY_MS : MAX_DELAY_MS;
    const exponential = Math.min(cap, BASE_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // Jitter spreads reconnects when a server restart drops many calls at once.
    return Math.round(exponential * (0.75 + Math.random() * 0.5));
  }

  retryNow() {
    if (this.stopped || this.socket !== null || this.timer === null) return;
    this.connect();
  }

  /** Send a protocol message; returns false if the socket is not open right now. */
  send(message) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** Stop for good (hang-up): no more reconnects. */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.emitState("closed", { code: 1000 });
  }

  emitState(state, extra = {}) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }
}
