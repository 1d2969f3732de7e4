// Text chat over the peer connections' data channels: a message goes straight to every
// other browser in the call (DTLS-encrypted, one copy per pair), never through the
// server, and is stored nowhere.

const MAX_LENGTH = 2000;

export class Chat {
  /**
   * `broadcast(message)` sends an object over every open data channel and returns how
   * many received it (call.js owns the connections).
   */
  constructor({ log, form, input, button, broadcast }) {
    this.log = log;
    this.form = form;
    this.input = input;
    this.button = button;
    this.broadcast = broadcast;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.setEnabled(false);
  }

  /** Enabled while at least one data channel is open. */
  setEnabled(enabled) {
    this.input.disabled = !enabled;
    this.button.disabled = !enabled;
  }

  send() {
    const text = this.input.value.trim().slice(0, MAX_LENGTH);
    if (!text) return;
    if (this.broadcast({ type: "chat", text }) > 0) {
      this.append(gettext("You"), text, "self");
      this.input.value = "";
    }
  }

  /** A message from a data channel; `author` is that participant's name. */
  receive(message, author) {
    if (typeof message.text !== "string") return;
    this.append(author || gettext("Other side"), message.text.slice(0, MAX_LENGTH), "peer");
  }

  append(author, text, side) {
    const item = document.createElement("li");
    item.className = `chat-message chat-message--${side}`;
    item.dataset.side = side;
    const meta = document.createElement("span");
    meta.className = "chat-author";
    const time = new Date().toLocaleTimeString(document.documentElement.lang, {
      hour: "2-digit",
      minute: "2-digit",
    });
    meta.textContent = `${author} · ${time}`;
    const body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text; // never innerHTML: the text comes from another browser
    item.append(meta, body);
    this.log.append(item);
    this.log.scrollTop = this.log.scrollHeight;
  }
}
