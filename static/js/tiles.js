// The grid of people in the call and the doctor's waiting list (DOM only).
//
// Each other participant gets a tile cloned from the page's <template>: video, name,
// role label, microphone state, quality badge (direct/relayed) and the safety code of
// the connection with that person. The grid's `data-count` (people including oneself)
// lets the stylesheet pick the layout, from a two-person stage to a 3×3 grid; scripts
// never set inline styles (strict CSP).

import { DOCTOR, GUEST, PATIENT, tileOrder } from "./mesh.js";

/** "Ärztin/Arzt", "Patientin/Patient", "Begleitperson" (Django's JavaScript catalog). */
export function roleLabel(role) {
  switch (role) {
    case DOCTOR:
      return pgettext("participant role", "Doctor");
    case PATIENT:
      return pgettext("participant role", "Patient");
    case GUEST:
      return pgettext("participant role", "Support person");
    default:
      return "";
  }
}

const LEVEL_LABELS = {
  good: () => gettext("good"),
  fair: () => gettext("fair"),
  poor: () => gettext("poor"),
};

export function levelLabel(level) {
  return LEVEL_LABELS[level] ? LEVEL_LABELS[level]() : gettext("connecting");
}

export class Tile {
  constructor(template, id) {
    this.element = template.content.firstElementChild.cloneNode(true);
    this.element.dataset.participantId = id;
    this.video = this.part("remote-video");
    this.stream = new MediaStream();
    this.video.srcObject = this.stream;
  }

  part(role) {
    return this.element.querySelector(`[data-role="${role}"]`);
  }

  setPerson({ name, role }) {
    this.part("peer-name").textContent = name || "";
    this.part("tile-role").textContent = roleLabel(role);
    this.element.dataset.participantRole = role || "";
  }

  setState(name, value) {
    this.element.dataset[name] = value;
  }

  setNote(text) {
    const note = this.part("remote-note");
    note.textContent = text;
    note.hidden = !text;
  }

  setMuted(muted) {
    this.part("tile-muted").hidden = !muted;
    this.element.dataset.muted = String(muted);
  }

  setQuality(level, relayed) {
    const badge = this.part("tile-quality");
    badge.dataset.level = level;
    badge.querySelector('[data-role="tile-quality-level"]').textContent = levelLabel(level);
    const route = relayed === null ? "" : relayed ? gettext("via relay") : gettext("direct");
    this.part("tile-route").textContent = route;
    this.setState("route", relayed === null ? "" : relayed ? "relay" : "direct");
  }

  setSafetyCode(code) {
    this.part("safety-code").textContent = code || "–";
    this.setState("safetyCode", code || "");
  }

  addTrack(track) {
    this.stream.addTrack(track);
    return this.video.play();
  }

  remove() {
    this.video.srcObject = null;
    this.element.remove();
  }
}

/** The grid: keeps tiles in a stable order (doctor, patient, guests by admission). */
export class TileGrid {
  constructor(container, template) {
    this.container = container;
    this.template = template;
    this.tiles = new Map(); // participant id → Tile
  }

  get(id) {
    return this.tiles.get(id) || null;
  }

  add(id, person) {
    const tile = new Tile(this.template, id);
    tile.since = person.since;
    tile.setPerson(person);
    this.tiles.set(id, tile);
    this.layout();
    return tile;
  }

  rekey(oldId, newId) {
    const tile = this.tiles.get(oldId);
    if (!tile) return;
    this.tiles.delete(oldId);
    this.tiles.set(newId, tile);
    tile.element.dataset.participantId = newId;
  }

  delete(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.remove();
    this.tiles.delete(id);
    this.layout();
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.delete(id);
  }

  layout() {
    const entries = [...this.tiles].map(([id, tile]) => ({
      id,
      role: tile.element.dataset.participantRole,
      since: tile.since,
      tile,
    }));
    // Moving a playing <video> pauses it in some browsers: only move what is out of place.
    let previous = null;
    for (const { tile } of tileOrder(entries)) {
      const expected = previous ? previous.nextElementSibling : this.container.firstElementChild;
      if (expected !== tile.element) {
        if (previous) previous.after(tile.element);
        else this.container.prepend(tile.element);
        tile.video.play().catch(() => {});
      }
      previous = tile.element;
    }
    this.container.dataset.count = String(this.tiles.size + 1); // + our own tile
  }
}

/** The doctor's waiting list: one entry with "Eintreten lassen" per waiting person. */
export class WaitingList {
  constructor(box, list, template, onAdmit) {
    this.box = box;
    this.list = list;
    this.template = template;
    this.entries = new Map();
    list.addEventListener("click", (event) => {
      const button = event.target.closest('[data-action="admit"]');
      if (!button || button.disabled) return;
      const entry = button.closest("[data-waiting-entry]");
      // Disabled until the server answers (admitted), so a double click admits only once.
      button.disabled = onAdmit(entry.dataset.participantId);
    });
  }

  get size() {
    return this.entries.size;
  }

  add(id, { name, role }) {
    if (!this.template) return;
    let entry = this.entries.get(id);
    if (!entry) {
      entry = this.template.content.firstElementChild.cloneNode(true);
      entry.dataset.participantId = id;
      this.entries.set(id, entry);
      this.list.append(entry);
    }
    entry.querySelector('[data-role="waiting-name"]').textContent = name || "";
    entry.querySelector('[data-role="waiting-role"]').textContent = `(${roleLabel(role)})`;
    entry.querySelector('[data-action="admit"]').disabled = false;
    this.update();
  }

  delete(id) {
    const entry = this.entries.get(id);
    if (!entry) return false;
    entry.remove();
    this.entries.delete(id);
    this.update();
    return true;
  }

  /** The server refused an admission (nobody-waiting): allow another try. */
  enableAll() {
    for (const entry of this.entries.values()) {
      entry.querySelector('[data-action="admit"]').disabled = false;
    }
  }

  clear() {
    for (const id of [...this.entries.keys()]) this.delete(id);
  }

  update() {
    this.box.hidden = this.entries.size === 0;
  }
}
