// Call page entry point: device check → waiting room → peer-to-peer call of 2 to 9.
//
// Modules: signaling.js (WebSocket to the server, reconnects), peer.js (one
// RTCPeerConnection, perfect negotiation), mesh.js (who offers to whom), bandwidth.js
// (uplink shared out from three people on), quality.js (getStats indicator), chat.js
// (data channel chat), safety.js (safety code), devices.js (camera/mic), tiles.js (the
// grid and the doctor's waiting list), ui.js (DOM helpers).
//
// Media is a mesh: one connection per pair of admitted participants, keyed by the other
// participant's server id. The server relays signaling only (addressed with `to`, the
// sender named in `from`); audio, video and chat go directly between the browsers, so
// the call goes on even while the signaling connection is re-established.

import { budgetFor } from "./bandwidth.js";
import { Chat } from "./chat.js";
import {
  LevelMeter,
  deviceIdOf,
  fillSelect,
  listDevices,
  openMedia,
  stopStream,
} from "./devices.js";
import { DOCTOR, GUEST, PATIENT, idOf, isPolite, offersTo, primaryPeer } from "./mesh.js";
import { Peer, hasTurnServer } from "./peer.js";
import { QualityMonitor, RouteWatch } from "./quality.js";
import { safetyCode } from "./safety.js";
import {
  CLOSE_EXPIRED,
  CLOSE_FORBIDDEN,
  CLOSE_RATE_LIMITED,
  CLOSE_SUPERSEDED,
  ERRORS,
  Signaling,
  TYPES,
} from "./signaling.js";
import { TileGrid, WaitingList, levelLabel } from "./tiles.js";
import { CallUI, t } from "./ui.js";

const root = document.querySelector("[data-call]");
const ui = new CallUI(root);
const selfRole = root.dataset.participant;
const isDoctor = selfRole === DOCTOR;
// How long the doctor waits for a reconnected participant to name its new id over the
// data channel before it gives up the running connection and offers a new one.
const REKEY_WAIT_MS = 1500;

const state = {
  stream: null, // our camera/microphone
  signaling: null,
  iceServers: [],
  selfId: null, // our id on the current signaling connection
  legacy: false, // a server without participant ids: one seat per role
  connectionAdmitted: false, // the current signaling connection has been admitted
  directory: new Map(), // id → {role, name}: who the server told us about
  gone: new Set(), // ids the server said have left
  doctorLeft: false, // the doctor hung up or left since we were admitted
  peers: new Map(), // id → entry (see createPeer)
  admissions: 0,
  since: 0, // admission order of the tiles
  audioOnly: false,
  muted: false,
  cameraOff: false,
  finished: false,
};

// Messages for the WebSocket close codes of the protocol.
function closeReason(code) {
  switch (code) {
    case CLOSE_EXPIRED:
      return gettext("Your access code has expired or the appointment was cancelled.");
    case CLOSE_FORBIDDEN:
      return gettext("You are not allowed to take part in this call.");
    case CLOSE_SUPERSEDED:
      return gettext(
        "The call was opened in another window or on another device and continues there.",
      );
    default:
      return gettext("The connection to the server was closed.");
  }
}

// ---------------------------------------------------------------- device check

const meter = new LevelMeter(ui.role("mic-level"));
const cameraSelect = ui.role("camera-select");
const micSelect = ui.role("mic-select");

async function openDevices(choice = {}) {
  let stream = null;
  try {
    stream = await openMedia(choice);
    ui.setHidden("device-error", true);
  } catch (error) {
    ui.setText(
      "device-error",
      error && error.name === "NotAllowedError"
        ? gettext("Access to camera and microphone was refused. Please allow it in your browser and reload the page.")
        : gettext("No camera or microphone was found. You can still join and see and hear the other side."),
    );
    ui.setHidden("device-error", false);
  }
  return stream;
}

async function useStream(stream) {
  const previous = state.stream;
  state.stream = stream;
  for (const role of ["preview", "self-video"]) ui.role(role).srcObject = stream;
  ui.setHidden("preview-empty", Boolean(stream && stream.getVideoTracks().length));
  if (ui.phase === "precheck") meter.attach(stream);
  if (stream) {
    for (const entry of state.peers.values()) {
      for (const track of stream.getTracks()) await entry.peer.replaceTrack(track.kind, track);
    }
  }
  applyTrackToggles();
  if (previous && previous !== stream) stopStream(previous);
  await refreshDeviceLists();
}

async function refreshDeviceLists() {
  try {
    const devices = await listDevices();
    fillSelect(cameraSelect, devices.video, deviceIdOf(state.stream, "video"), gettext("Camera"));
    fillSelect(micSelect, devices.audio, deviceIdOf(state.stream, "audio"), gettext("Microphone"));
  } catch {
    // enumerateDevices is unavailable on insecure origins; the default devices remain.
  }
}

async function onDeviceChoice() {
  // Release the old devices first: some cameras cannot be opened twice.
  stopStream(state.stream);
  const stream = await openDevices({ audioId: micSelect.value, videoId: cameraSelect.value });
  await useStream(stream);
}

// ---------------------------------------------------------------- joining and signaling

function join() {
  meter.detach();
  ui.role("preview").srcObject = null; // the self-view in the call takes over
  ui.setPhase("waiting");
  ui.setHidden("waiting-empty", false);
  const signaling = new Signaling(root.dataset.wsPath, root.dataset.wsQuery);
  state.signaling = signaling;
  signaling.addEventListener("state", (event) => onSignalingState(event.detail));
  signaling.addEventListener("message", (event) => onMessage(event.detail));
  signaling.connect();
}

function onSignalingState({ state: socketState, code }) {
  ui.setState("wsState", socketState);
  if (socketState === "retrying") {
    state.connectionAdmitted = false;
    let message =
      code === CLOSE_RATE_LIMITED
        ? gettext("Too many messages in a short time. Reconnecting in a few seconds…")
        : gettext("Connection to the server lost. Reconnecting…");
    if (connectedPeers().length > 0) message += " " + gettext("Your conversation continues.");
    ui.showStatus(message, "warning");
  } else if (socketState === "closed" && code !== 1000) {
    finish(closeReason(code), { error: true });
  }
}

function onMessage(message) {
  switch (message.type) {
    case TYPES.WELCOME:
      onWelcome(message);
      break;
    case TYPES.WAITING:
      onWaiting();
      break;
    case TYPES.PEER_WAITING:
      onPeerWaiting(message);
      break;
    case TYPES.ADMITTED:
      onAdmitted(message);
      break;
    case TYPES.PARTICIPANT_JOINED:
      onParticipantJoined(message);
      break;
    case TYPES.PARTICIPANT_LEFT:
      onParticipantLeft(idOf(message, "id", ""));
      break;
    case TYPES.PEER_LEFT:
      // Servers with ids also send participant-left, which is what we act on.
      if (state.legacy) onParticipantLeft(defaultPeerId());
      break;
    case TYPES.OFFER:
    case TYPES.ANSWER:
    case TYPES.CANDIDATE:
      enqueue(() => onPeerSignal(message));
      break;
    case TYPES.NOTICE:
      // A short text from the practice (board), only while waiting; shown, never stored.
      ui.setText("notice", typeof message.text === "string" ? message.text.slice(0, 200) : "");
      ui.setHidden("notice", !message.text);
      break;
    case TYPES.ERROR:
      onServerError(message);
      break;
    default:
      break; // unknown server messages are ignored (forward compatibility)
  }
}

/** The other side of a two-person call on a server without ids. */
function defaultPeerId() {
  return isDoctor ? PATIENT : DOCTOR;
}

function remember(id, role, name) {
  if (!id) return;
  const known = state.directory.get(id) || {};
  state.directory.set(id, {
    role: typeof role === "string" ? role : known.role || "",
    name: typeof name === "string" && name ? name : known.name || "",
  });
  const entry = state.peers.get(id);
  if (entry) entry.tile.setPerson(personOf(id));
}

function personOf(id) {
  return state.directory.get(id) || { role: "", name: "" };
}

function onWelcome(message) {
  state.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
  state.legacy = typeof message.id !== "string";
  state.selfId = idOf(message, "id", selfRole);
  state.connectionAdmitted = false;
  state.directory.clear();
  for (const person of Array.isArray(message.participants) ? message.participants : []) {
    if (person && typeof person.id === "string") remember(person.id, person.role, person.name);
  }
  if (message.peer && state.legacy) remember(message.peer.role, message.peer.role, message.peer.name);
  if (isDoctor) waitingList.clear(); // peer-waiting follows for everyone who waits
  // Our running connections were set up under ids the server no longer uses. Tell each
  // peer our new id peer-to-peer, so that both sides keep the connection (and its safety
  // code) when the server admits us again, instead of starting over.
  for (const entry of state.peers.values()) {
    entry.stale = true;
    sayHello(entry);
  }
  ui.showStatus("");
}

function onWaiting() {
  if (state.connectionAdmitted || connectedPeers().length === 0) {
    // Sent back to the waiting room (or nothing is running): see and hear nothing more.
    const demoted = state.connectionAdmitted;
    state.connectionAdmitted = false;
    closeAll();
    ui.setPhase("waiting");
    // When the doctor hangs up, the server sends everyone back to the waiting room.
    if (demoted && state.doctorLeft) ui.showStatus(gettext("The doctor has ended the call."));
    else if (demoted) ui.showStatus(gettext("The doctor has asked you to wait in the waiting room again."));
    return;
  }
  // A reconnect that the server did not recognise as the same admission: the media goes
  // directly between the browsers and goes on until the doctor lets us in again.
}

function onPeerWaiting(message) {
  const id = idOf(message, "id", PATIENT);
  remember(id, message.role || PATIENT, message.name);
  // An admitted participant that goes back to waiting was announced with
  // participant-left first, which closed our connection to it (Nr. 4).
  waitingList.add(id, personOf(id));
  ui.setHidden("waiting-empty", true);
}

function admit(id) {
  const message = state.legacy ? { type: TYPES.ADMIT } : { type: TYPES.ADMIT, id };
  return state.signaling.send(message);
}

function onAdmitted(message) {
  state.admissions += 1;
  ui.setState("admissions", String(state.admissions));
  if (isDoctor) {
    const id = idOf(message, "id", PATIENT);
    // A resumed admission comes without peer-waiting: the name may follow peer-to-peer.
    remember(id, message.role || (state.legacy ? PATIENT : undefined), message.name);
    waitingList.delete(id);
    enterCall();
    if (offersTo(selfRole, "admitted", personOf(id).role)) offerAfterAdmission(id);
    return;
  }
  // We were let in: the message names everyone admitted, who will offer to us.
  state.connectionAdmitted = true;
  state.doctorLeft = false;
  if (Array.isArray(message.ice_servers)) state.iceServers = message.ice_servers;
  for (const person of Array.isArray(message.participants) ? message.participants : []) {
    if (person && typeof person.id === "string") remember(person.id, person.role, person.name);
  }
  enterCall();
}

function enterCall() {
  if (ui.phase !== "call") {
    ui.setPhase("call");
    if (state.peers.size === 0) ui.showStatus(gettext("Connecting…"));
  } else {
    ui.showStatus("");
  }
  if (isDoctor) ui.setHidden("waiting-empty", true);
}

function onParticipantJoined(message) {
  const id = idOf(message, "id", "");
  if (!id) return;
  remember(id, message.role, message.name);
  if (offersTo(selfRole, "participant-joined", message.role)) offerTo(id);
}

/** The doctor offers on every `admitted` (contract), renegotiating a running connection. */
async function offerAfterAdmission(id) {
  if (!state.peers.has(id) && staleConnectedPeers().length > 0) {
    // A participant that reconnected names its new id over the data channel; give that
    // a moment so the running connection is kept rather than replaced.
    const deadline = performance.now() + REKEY_WAIT_MS;
    while (!state.peers.has(id) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  // Ids are never reused: one that left while we waited stays gone.
  if (state.finished || (state.gone.has(id) && !state.legacy)) return;
  offerTo(id);
}

function offerTo(id) {
  const entry = state.peers.get(id);
  // An id is announced once per admission; a repeat while we are still connecting
  // (crossed announcements) must not throw that attempt away.
  if (entry && ["new", "connecting"].includes(entry.peer.pc.connectionState)) return;
  if (entry && entry.peer.pc.connectionState === "connected") {
    const ice = entry.peer.pc.iceConnectionState;
    entry.stale = false;
    entry.peer.offer({ iceRestart: ice !== "connected" && ice !== "completed" });
    return;
  }
  closePeer(id);
  createPeer(id, { weOffered: true }); // adding the tracks fires negotiationneeded: the offer
}

function onParticipantLeft(id) {
  const person = personOf(id);
  if (person.role === DOCTOR) state.doctorLeft = true;
  if (isDoctor && waitingList.delete(id) && !state.peers.has(id)) {
    ui.showStatus(
      person.role === PATIENT
        ? gettext("The patient has left the waiting room.")
        : t(gettext("%(name)s has left the waiting room."), { name: person.name }),
    );
  }
  if (state.peers.has(id)) {
    closePeer(id);
    leftMessage(person, false);
  }
  state.directory.delete(id);
  state.gone.add(id);
  if (isDoctor && waitingList.size === 0) ui.setHidden("waiting-empty", state.peers.size > 0);
}

/** Tell the others that a person has gone; back to the waiting room when nobody is left. */
function leftMessage(person, hungUp) {
  let message;
  if (person.role === DOCTOR) {
    message = hungUp ? gettext("The doctor has ended the call.") : gettext("The doctor has left the call.");
  } else if (person.role === PATIENT) {
    message = hungUp ? gettext("The patient has ended the call.") : gettext("The patient has left the call.");
  } else {
    message = t(gettext("%(name)s has left the call."), { name: person.name || gettext("Other side") });
  }
  if (state.finished) return;
  if (state.peers.size === 0) {
    ui.setPhase("waiting");
    ui.setHidden("waiting-empty", waitingList.size > 0);
  }
  ui.showStatus(message);
}

function onServerError(message) {
  // Never log message content: codes only.
  console.warn("server refused a message:", message.code);
  if (message.code === ERRORS.INSECURE_SDP) {
    ui.showStatus(gettext("The connection could not be encrypted and was refused."), "error");
  } else if (message.code === ERRORS.NOBODY_WAITING) {
    waitingList.enableAll();
  }
}

// Descriptions and candidates are handled strictly in arrival order.
let queue = Promise.resolve();
function enqueue(task) {
  queue = queue.then(task).catch((error) => console.warn("signal handling failed", error.name));
}

async function onPeerSignal(message) {
  const from = idOf(message, "from", defaultPeerId());
  let entry = state.peers.get(from);
  if (message.type === TYPES.CANDIDATE) {
    if (entry) await entry.peer.addCandidate(message.candidate);
    return;
  }
  if (typeof message.sdp !== "string") return;
  if (!entry) entry = adoptByFingerprint(from, message.sdp);
  if (entry && entry.peer.isForeign(message.sdp)) {
    // The other side started a new connection (e.g. it reloaded the page): its DTLS
    // certificate changed, so ours must start over too. An offer is answered by a new
    // connection; an answer makes the offering side offer again from a new connection.
    const weOffered = entry.weOffered;
    closePeer(from);
    entry = null;
    if (message.type === TYPES.ANSWER) {
      if (weOffered) createPeer(from, { weOffered: true });
      return;
    }
  }
  if (!entry) {
    if (message.type !== "offer") return;
    entry = createPeer(from, { weOffered: false });
  }
  if (ui.phase !== "call") ui.setPhase("call");
  try {
    await entry.peer.handleDescription(message.type, message.sdp);
  } catch (error) {
    console.warn("description refused", error.name);
    if (entry.weOffered) {
      closePeer(from); // an answer from a connection we no longer know: start over
      createPeer(from, { weOffered: true });
    }
  }
}

/**
 * A description from a new id with the DTLS fingerprint of a connection we already
 * hold: the same browser connection, whose signaling reconnected under a new id. Keep
 * that connection under the new id (a certificate belongs to one RTCPeerConnection).
 */
function adoptByFingerprint(id, sdp) {
  for (const entry of state.peers.values()) {
    const current = entry.peer.pc.remoteDescription;
    if (current && current.sdp && !entry.peer.isForeign(sdp)) {
      rekey(entry.id, id);
      return entry;
    }
  }
  return null;
}

function rekey(oldId, newId) {
  const entry = state.peers.get(oldId);
  if (!entry || oldId === newId) return;
  if (state.peers.has(newId)) closePeer(newId); // a fresh attempt loses to the running call
  state.peers.delete(oldId);
  state.peers.set(newId, entry);
  grid.rekey(oldId, newId);
  entry.id = newId;
  entry.stale = false;
  if (!state.directory.has(newId) && state.directory.has(oldId)) {
    state.directory.set(newId, state.directory.get(oldId));
  }
  entry.tile.setPerson(personOf(newId));
  updatePrimary();
}

// ---------------------------------------------------------------- the peer connections

function createPeer(id, { weOffered }) {
  if (!state.directory.has(id)) remember(id, state.legacy ? id : "", "");
  const person = personOf(id);
  const icePolicy = root.dataset.icePolicy;
  if (icePolicy === "relay" && !hasTurnServer(state.iceServers)) {
    // Relay-only never falls back to a direct connection: say why nothing connects.
    ui.showStatus(
      gettext("To hide your IP address the call must go through a relay server, but none is available. Please contact your practice."),
      "warning",
    );
  }
  const peer = new Peer({
    icePolicy,
    // Asked at each collision: both ids can change with a reconnect.
    polite: () => isPolite(selfRole, personOf(entry.id).role || person.role, state.selfId, entry.id),
    offerer: weOffered,
    iceServers: state.iceServers,
    stream: state.stream,
  });
  state.since += 1;
  const tile = grid.add(id, { ...person, since: state.since });
  const entry = {
    id,
    peer,
    tile,
    weOffered,
    stale: false,
    remoteMedia: null, // camera/microphone state that side reported
    level: "unknown",
    sample: null,
    poorSamples: 0,
    quality: null,
    routeWatch: new RouteWatch(), // notices a running pair moving between direct and relay
  };
  state.peers.set(id, entry);
  if (isDoctor) tile.element.querySelector('[data-action="remove"]').disabled = state.legacy;
  peer.addEventListener("signal", (event) => {
    // Addressed to the pair's other side; `entry.id` follows a re-key.
    const message = state.legacy ? event.detail : { ...event.detail, to: entry.id };
    if (state.signaling) state.signaling.send(message);
  });
  peer.addEventListener("track", (event) => {
    tile.addTrack(event.detail.track).catch(() => ui.setHidden("play-box", false));
  });
  peer.addEventListener("state", (event) => onPeerState(entry, event.detail));
  peer.addEventListener("channel-open", () => {
    sayHello(entry);
    sendMediaState(entry);
    updateChat();
  });
  peer.addEventListener("channel-close", updateChat);
  peer.addEventListener("channel-message", (event) => onChannelMessage(entry, event.detail));
  if (state.audioOnly) peer.setAudioOnly(true);
  entry.quality = new QualityMonitor(peer.pc, (sample, level) => onQuality(entry, sample, level));
  entry.quality.start();
  updateBudget();
  updatePrimary();
  if (icePolicy !== "relay" || hasTurnServer(state.iceServers)) ui.showStatus("");
  return entry;
}

function closePeer(id) {
  const entry = state.peers.get(id);
  if (!entry) return;
  entry.quality.stop();
  entry.peer.close();
  state.peers.delete(id);
  grid.delete(id);
  updateBudget();
  updatePrimary();
  updateChat();
  updateOverallQuality();
}

function closeAll() {
  for (const id of [...state.peers.keys()]) closePeer(id);
}

function connectedPeers() {
  return [...state.peers.values()].filter((e) => e.peer.pc.connectionState === "connected");
}

function staleConnectedPeers() {
  return connectedPeers().filter((e) => e.stale);
}

/** From three people on, every connection gets its share of our uplink (bandwidth.js). */
function updateBudget() {
  const budget = budgetFor(state.peers.size + 1);
  for (const entry of state.peers.values()) entry.peer.setBudget(budget);
  root.dataset.uplinkShareKbps = budget ? String(budget.shareKbps) : "";
}

/** The root element's connection state shows the primary pair (two-person call: the only one). */
function primaryEntry() {
  const people = [...state.peers.values()].map((e) => ({
    id: e.id,
    role: personOf(e.id).role,
    since: e.tile.since,
  }));
  const primary = primaryPeer(selfRole, people);
  return primary ? state.peers.get(primary.id) : null;
}

function updatePrimary() {
  const entry = primaryEntry();
  const pc = entry ? entry.peer.pc : null;
  ui.setState("iceState", pc ? pc.iceConnectionState : "new");
  ui.setState("connectionState", pc ? pc.connectionState : "new");
  ui.setState("dtlsState", entry ? entry.peer.dtlsState() : "new");
  ui.setState("safetyCode", entry ? entry.tile.element.dataset.safetyCode || "" : "");
  ui.setState("peers", String(state.peers.size));
  ui.setState("connectedPeers", String(connectedPeers().length));
}

function onPeerState(entry, { ice, connection, dtls }) {
  if (state.peers.get(entry.id) !== entry) return;
  entry.tile.setState("iceState", ice);
  entry.tile.setState("dtlsState", dtls);
  entry.tile.setState("connectionState", connection);
  if (connection === "connected") {
    updateTileNote(entry);
    showSafetyCode(entry);
  } else if (connection === "failed" || connection === "disconnected") {
    const known = state.directory.has(entry.id) && !entry.stale;
    if (!known && connection === "failed") {
      const person = personOf(entry.id);
      closePeer(entry.id);
      if (state.peers.size === 0) leftMessage(person, false);
      ui.showStatus(gettext("The connection to the other side was lost."));
    } else {
      entry.tile.setNote(gettext("Connection interrupted. Reconnecting…"));
    }
  }
  updatePrimary();
}

/** The safety code of one pair, from the certificates DTLS actually used (safety.js). */
function pairSafetyCode(peer) {
  return safetyCode(peer.pc);
}

async function showSafetyCode(entry) {
  const code = await pairSafetyCode(entry.peer);
  if (!code || state.peers.get(entry.id) !== entry) return;
  entry.tile.setSafetyCode(code);
  updatePrimary();
}

function sayHello(entry) {
  // Introduce ourselves peer-to-peer: our name, and our id on the current signaling
  // connection (it changes with every reconnect).
  entry.peer.sendData({
    type: "hello",
    name: root.dataset.displayName || "",
    id: state.selfId,
    role: selfRole,
  });
}

function onChannelMessage(entry, message) {
  if (state.peers.get(entry.id) !== entry) return;
  if (message.type === "chat") {
    chat.receive(message, personOf(entry.id).name);
  } else if (message.type === "bye") {
    const person = personOf(entry.id);
    if (person.role === DOCTOR) state.doctorLeft = true;
    closePeer(entry.id);
    leftMessage(person, true);
  } else if (message.type === "hello") {
    if (typeof message.id === "string" && message.id && !state.legacy && message.id !== entry.id) {
      rekey(entry.id, message.id.slice(0, 64));
    }
    // The server's word (welcome, peer-waiting, admitted) wins over what a browser says.
    const person = personOf(entry.id);
    const role = [PATIENT, GUEST].includes(message.role) && !person.role ? message.role : undefined;
    if (role || (!person.name && typeof message.name === "string")) {
      remember(entry.id, role, person.name || String(message.name || "").slice(0, 80));
    }
  } else if (message.type === "media") {
    entry.remoteMedia = {
      camera: message.camera !== false,
      microphone: message.microphone !== false,
    };
    updateTileNote(entry);
  }
}

/** Tell the others (peer-to-peer) whether our camera and microphone are on. */
function sendMediaState(entry) {
  const message = { type: "media", camera: !state.cameraOff, microphone: !state.muted };
  if (entry) entry.peer.sendData(message);
  else broadcast(message);
}

/** Send an object over every open data channel; returns how many got it. */
function broadcast(message) {
  let sent = 0;
  for (const entry of state.peers.values()) if (entry.peer.sendData(message)) sent += 1;
  return sent;
}

function updateChat() {
  chat.setEnabled([...state.peers.values()].some((e) => e.peer.channelOpen));
}

function updateTileNote(entry) {
  const peer = entry.peer;
  if (peer.pc.connectionState !== "connected") return;
  const remote = entry.remoteMedia || { camera: true, microphone: true };
  const audioOnly = state.audioOnly || !peer.remoteVideoActive();
  // The stylesheet hides the tile's video in audio-only mode (the sound keeps playing).
  entry.tile.setState("media", audioOnly ? "audio" : "video");
  entry.tile.setMuted(!remote.microphone);
  const notes = [];
  if (audioOnly) notes.push(gettext("Audio only"));
  else if (!remote.camera) notes.push(gettext("Camera switched off"));
  if (!remote.microphone) notes.push(gettext("Microphone muted"));
  entry.tile.setNote(notes.join(" · "));
}

// ---------------------------------------------------------------- quality indicator

const LEVEL_RANK = { good: 0, fair: 1, poor: 2 };

function onQuality(entry, sample, level) {
  if (state.peers.get(entry.id) !== entry) return;
  entry.sample = sample.connected ? sample : null;
  entry.level = sample.connected ? level : "unknown";
  entry.tile.setQuality(entry.level, sample.connected ? sample.relayed : null);
  if (sample.connected) {
    updateTileNote(entry);
    const switched = entry.routeWatch.update(sample);
    if (switched) showRouteSwitch(switched);
  }
  // Offer audio only after two poor samples in a row, not on a single spike.
  entry.poorSamples = entry.level === "poor" ? entry.poorSamples + 1 : 0;
  updateOverallQuality();
  if (entry === primaryEntry()) ui.setState("dtlsState", entry.peer.dtlsState());
}

/** The call's indicator: the weakest of our connections, relayed if any one is. */
function updateOverallQuality() {
  const measured = [...state.peers.values()].filter((e) => e.sample);
  const indicator = ui.role("quality");
  if (measured.length === 0) {
    indicator.dataset.level = "unknown";
    ui.setText("quality-level", gettext("connecting"));
    ui.setText("route", "");
    ui.setState("route", "");
    ui.setText("quality-details", "");
    ui.setHidden("quality-hint", true);
    return;
  }
  const worst = measured.reduce((a, b) => (LEVEL_RANK[b.level] > LEVEL_RANK[a.level] ? b : a));
  const relayed = measured.some((e) => e.sample.relayed);
  indicator.dataset.level = worst.level;
  ui.setText("quality-level", levelLabel(worst.level));
  ui.setText("route", relayed ? gettext("via relay") : gettext("direct"));
  ui.setState("route", relayed ? "relay" : "direct");
  ui.setText("quality-details", describe(worst.sample));
  const poor = measured.some((e) => e.poorSamples >= 2);
  ui.setHidden("quality-hint", state.audioOnly || !poor);
}

/** A short, calm note when a running connection moves between direct and relayed. */
function showRouteSwitch(route) {
  ui.flash(
    "route-note",
    route === "relay"
      ? gettext("The connection now runs through our relay server. It stays end-to-end encrypted.")
      : gettext("The connection now runs directly between you again."),
  );
}

function describe(sample) {
  const parts = [];
  if (sample.rttMs !== null) parts.push(`${gettext("RTT")} ${Math.round(sample.rttMs)} ms`);
  const percent = (sample.loss * 100).toLocaleString(document.documentElement.lang, {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  parts.push(`${gettext("loss")} ${percent} %`);
  if (sample.kbpsIn !== null) parts.push(`${Math.round(sample.kbpsIn)} kbit/s`);
  if (sample.width && sample.fps) {
    parts.push(`${sample.width}×${sample.height} @ ${Math.round(sample.fps)} fps`);
  }
  return parts.join(" · ");
}

// ---------------------------------------------------------------- controls

function applyTrackToggles() {
  if (!state.stream) return;
  for (const track of state.stream.getAudioTracks()) track.enabled = !state.muted;
  for (const track of state.stream.getVideoTracks()) track.enabled = !state.cameraOff;
  ui.role("self-video").classList.toggle("is-off", state.cameraOff);
  ui.setHidden("self-muted", !state.muted);
}

function toggleMute() {
  state.muted = !state.muted;
  applyTrackToggles();
  ui.setPressed("mute", state.muted, gettext("Unmute"), gettext("Mute"));
  sendMediaState();
}

function toggleCamera() {
  state.cameraOff = !state.cameraOff;
  applyTrackToggles();
  ui.setPressed("camera", state.cameraOff, gettext("Camera on"), gettext("Camera off"));
  sendMediaState();
}

/** Audio only for the whole call: no video to or from anyone. */
function toggleAudioOnly() {
  state.audioOnly = !state.audioOnly;
  for (const entry of state.peers.values()) {
    entry.peer.setAudioOnly(state.audioOnly);
    entry.poorSamples = 0;
  }
  ui.setState("media", state.audioOnly ? "audio" : "video");
  ui.setPressed("audio-only", state.audioOnly, gettext("Video on again"), gettext("Audio only"));
  ui.setHidden("quality-hint", true);
  for (const entry of state.peers.values()) updateTileNote(entry);
}

/** The doctor sends someone back to the waiting room (the server then says who left). */
function onTileClick(event) {
  const button = event.target.closest('[data-action="remove"]');
  if (!button || !isDoctor || state.legacy) return;
  const tile = button.closest("[data-tile]");
  button.disabled = state.signaling.send({ type: TYPES.REMOVE, id: tile.dataset.participantId });
}

async function hangUp() {
  if (broadcast({ type: "bye" }) > 0) {
    // Give the data channels a moment to deliver the goodbye before closing.
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (state.signaling) state.signaling.send({ type: TYPES.BYE });
  finish(gettext("You have ended the call."));
}

/** End for good on this page: release devices, stop reconnecting. */
function finish(message, { error = false } = {}) {
  if (state.finished) return;
  state.finished = true;
  closeAll();
  waitingList.clear();
  if (state.signaling) state.signaling.close();
  stopStream(state.stream);
  meter.detach();
  ui.setPhase("ended");
  ui.setText("ended-text", message);
  ui.showStatus("");
  ui.root.classList.toggle("call--error", error);
}

// ---------------------------------------------------------------- start

const chat = new Chat({
  log: ui.role("chat-log"),
  form: ui.role("chat-form"),
  input: ui.role("chat-input"),
  button: ui.role("chat-send"),
  broadcast,
});
const grid = new TileGrid(ui.role("tiles"), ui.role("tile-template"));
const waitingList = new WaitingList(
  ui.role("admit-box"),
  ui.role("waiting-list"),
  ui.role("waiting-template"),
  admit,
);

ui.on("join", join);
ui.on("mute", toggleMute);
ui.on("camera", toggleCamera);
ui.on("audio-only", toggleAudioOnly);
ui.on("hangup", hangUp);
ui.on("rejoin", () => window.location.reload());
ui.on("play", () => {
  for (const video of root.querySelectorAll("[data-tile] video")) video.play().catch(() => {});
  ui.setHidden("play-box", true);
});
ui.role("tiles").addEventListener("click", onTileClick);
cameraSelect.addEventListener("change", onDeviceChoice);
micSelect.addEventListener("change", onDeviceChoice);

// For the end-to-end tests and for support: the live connections (read-only view).
Object.defineProperty(window, "redconnect", {
  value: Object.freeze({
    /** The primary connection (a two-person call's only one), or null. */
    get pc() {
      const entry = primaryEntry();
      return entry ? entry.peer.pc : null;
    },
    /** id → RTCPeerConnection of every pair. */
    get peers() {
      return Object.freeze(Object.fromEntries([...state.peers].map(([id, e]) => [id, e.peer.pc])));
    },
    get id() {
      return state.selfId;
    },
  }),
});

ui.setPhase("precheck");
openDevices().then(async (stream) => {
  await useStream(stream);
  for (const button of ui.actions("join")) button.disabled = false;
});
