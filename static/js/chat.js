// Text chat over the peer connection's data channel: messages go straight to the other
// browser (DTLS-encrypted), never through the server, and are stored nowhere.

const MAX_LENGTH = 2000;

export class Chat {
  constructor({ log, form, input, button }) {
    this.log = log;
    this.form = form;
    this.input = input;
    this.button = button;
    this.peer = null;
    this.peerName = "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.setEnabled(false);
  }

  /** Use a peer connection's channel (`peer.sendData`), or none (`null`). */
  attach(peer, peerName) {
    this.peer = peer;
    this.peerName = peerName || "";
    this.setEnabled(Boolean(peer && peer.channelOpen));
  }

  setEnabled(enabled) {
    this.input.disabled = !enabled;
    this.button.disabled = !enabled;
  }

  send() {
    const text = this.input.value.trim().slice(0, MAX_LENGTH);
    if (!text || !this.peer) return;
    if (this.peer.sendData({ type: "chat", text })) {
      this.append(gettext("You"), text, "self");
      this.input.value = "";
    }
  }

  /** A message from the data channel. */
  receive(message) {
    if (typeof message.text !== "string") return;
    this.append(this.peerName || gettext("Other side"), message.text.slice(0, MAX_LENGTH), "peer");
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
    body.textContent = text; // never innerHTML: the text comes from the other browser
    item.append(meta, body);
    this.log.append(item);
    this.log.scrollTop = this.log.scrollHeight;
  }
}
