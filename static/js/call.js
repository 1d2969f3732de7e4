// Call page entry point: device check → waiting room → peer-to-peer call.
//
// Modules: signaling.js (WebSocket to the server, reconnects), peer.js (the
// RTCPeerConnection, perfect negotiation), quality.js (getStats indicator), chat.js
// (data channel chat), safety.js (safety code), devices.js (camera/mic), ui.js (DOM).
// The server relays signaling only; audio, video and chat go directly between the two
// browsers, so the call goes on even while the signaling connection is re-established.

import { Chat } from "./chat.js";
import {
  LevelMeter,
  deviceIdOf,
  fillSelect,
  listDevices,
  openMedia,
  stopStream,
} from "./devices.js";
import { Peer, hasTurnServer } from "./peer.js";
import { QualityMonitor, RouteWatch } from "./quality.js";
import { safetyCode } from "./safety.js";
import {
  CLOSE_EXPIRED,
  CLOSE_FORBIDDEN,
  CLOSE_RATE_LIMITED,
  CLOSE_SUPERSEDED,
  Signaling,
} from "./signaling.js";
import { CallUI } from "./ui.js";

const root = document.querySelector("[data-call]");
const ui = new CallUI(root);
const isDoctor = root.dataset.participant === "doctor";

const state = {
  stream: null, // our camera/microphone
  signaling: null,
  peer: null,
  remoteStream: null,
  quality: null,
  iceServers: [],
  peerName: "",
  peerPresent: false, // the other side is connected to the server
  admissions: 0,
  audioOnly: false,
  muted: false,
  cameraOff: false,
  poorSamples: 0,
  remoteMedia: null, // camera/microphone state the other side reported
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
  if (state.peer && stream) {
    for (const track of stream.getTracks()) await state.peer.replaceTrack(track.kind, track);
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
  const signaling = new Signaling(root.dataset.wsPath);
  state.signaling = signaling;
  signaling.addEventListener("state", (event) => onSignalingState(event.detail));
  signaling.addEventListener("message", (event) => onMessage(event.detail));
  signaling.connect();
}

function onSignalingState({ state: socketState, code }) {
  ui.setState("wsState", socketState);
  if (socketState === "retrying") {
    const running = state.peer && state.peer.pc.connectionState === "connected";
    let message =
      code === CLOSE_RATE_LIMITED
        ? gettext("Too many messages in a short time. Reconnecting in a few seconds…")
        : gettext("Connection to the server lost. Reconnecting…");
    if (running) message += " " + gettext("Your conversation continues.");
    ui.showStatus(message, "warning");
  } else if (socketState === "closed" && code !== 1000) {
    finish(closeReason(code), { error: true });
  }
}

function onMessage(message) {
  switch (message.type) {
    case "welcome":
      state.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
      state.peerPresent = Boolean(message.peer);
      if (message.peer) setPeerName(message.peer.name);
      ui.showStatus("");
      break;
    case "waiting":
      // After a reconnect the running call goes on (media is peer-to-peer).
      if (ui.phase !== "call") ui.setPhase("waiting");
      break;
    case "peer-waiting":
      state.peerPresent = true;
      setPeerName(message.name);
      showAdmit(message.name);
      break;
    case "admitted":
      onAdmitted();
      break;
    case "offer":
    case "answer":
    case "candidate":
      enqueue(() => onPeerSignal(message));
      break;
    case "peer-left":
      onPeerLeft();
      break;
    case "notice":
      // A short text from the practice (board), only while waiting; shown, never stored.
      ui.setText("notice", typeof message.text === "string" ? message.text.slice(0, 200) : "");
      ui.setHidden("notice", !message.text);
      break;
    case "error":
      onServerError(message);
      break;
    default:
      break; // unknown server messages are ignored (forward compatibility)
  }
}

function setPeerName(name) {
  state.peerName = typeof name === "string" ? name : "";
  ui.setText("peer-name", state.peerName);
  ui.setText("waiting-name", state.peerName);
}

function showAdmit(name) {
  ui.setText("waiting-name", name);
  ui.setHidden("admit-box", false);
  ui.setHidden("waiting-empty", true);
  for (const button of ui.actions("admit")) button.disabled = false;
}

function admit() {
  // Disabled until the server answers (admitted), so a double click admits only once.
  const sent = state.signaling.send({ type: "admit" });
  for (const button of ui.actions("admit")) button.disabled = sent;
}

function onAdmitted() {
  state.admissions += 1;
  state.peerPresent = true;
  ui.setState("admissions", String(state.admissions));
  ui.setHidden("admit-box", true);
  if (ui.phase !== "call") {
    ui.setPhase("call");
    ui.setText("remote-note", gettext("Connecting…"));
    ui.setHidden("remote-note", false);
  }
  ui.showStatus("");
  if (isDoctor) offerAfterAdmission();
}

/** The doctor sends a fresh offer on every `admitted` (contract). */
function offerAfterAdmission() {
  const peer = state.peer;
  if (peer && peer.pc.connectionState === "connected") {
    const ice = peer.pc.iceConnectionState;
    peer.offer({ iceRestart: ice !== "connected" && ice !== "completed" });
    return;
  }
  dropPeer();
  createPeer(); // adding the tracks fires negotiationneeded, which sends the offer
}

// Descriptions and candidates are handled strictly in arrival order.
let queue = Promise.resolve();
function enqueue(task) {
  queue = queue.then(task).catch((error) => console.warn("signal handling failed", error.name));
}

async function onPeerSignal(message) {
  if (message.type === "candidate") {
    if (state.peer) await state.peer.addCandidate(message.candidate);
    return;
  }
  if (typeof message.sdp !== "string") return;
  if (state.peer && state.peer.isForeign(message.sdp)) {
    // The other side started a new connection (e.g. it reloaded the page): its DTLS
    // certificate changed, so ours must start over too. An offer is answered by a new
    // connection; an answer makes the doctor offer again from a new connection.
    dropPeer();
    if (message.type === "answer") {
      if (isDoctor) createPeer();
      return;
    }
  }
  if (!state.peer) {
    if (message.type !== "offer") return;
    createPeer();
  }
  if (ui.phase !== "call") ui.setPhase("call");
  try {
    await state.peer.handleDescription(message.type, message.sdp);
  } catch (error) {
    console.warn("description refused", error.name);
    if (isDoctor) {
      dropPeer(); // an answer from a connection we no longer know: start over
      createPeer();
    }
  }
}

function onPeerLeft() {
  state.peerPresent = false;
  const peer = state.peer;
  if (peer && peer.pc.connectionState === "connected") {
    // Only the other side's *signaling* is gone; the media goes directly between us.
    ui.showStatus(gettext("The other side lost the connection to the server. Your conversation continues."));
    return;
  }
  if (peer || ui.phase === "call") {
    otherSideGone(
      isDoctor ? gettext("The patient has left the call.") : gettext("The doctor has left the call."),
    );
  } else if (isDoctor && !ui.role("admit-box").hidden) {
    // The patient went away before being admitted.
    ui.setHidden("admit-box", true);
    ui.setHidden("waiting-empty", false);
    ui.showStatus(gettext("The patient has left the waiting room."));
  }
}

/** The other side hung up or is gone: back to the waiting room. */
function otherSideGone(message) {
  dropPeer();
  if (state.finished) return;
  ui.setPhase("waiting");
  ui.setHidden("admit-box", true);
  ui.setHidden("waiting-empty", false);
  ui.showStatus(message);
}

function onServerError(message) {
  // Never log message content: codes only.
  console.warn("server refused a message:", message.code);
  if (message.code === "insecure-sdp") {
    ui.showStatus(gettext("The connection could not be encrypted and was refused."), "error");
  } else if (message.code === "nobody-waiting") {
    ui.setHidden("admit-box", true);
  }
}

// ---------------------------------------------------------------- the peer connection

function createPeer() {
  const icePolicy = root.dataset.icePolicy;
  const peer = new Peer({ polite: !isDoctor, iceServers: state.iceServers, stream: state.stream, icePolicy });
  state.peer = peer;
  peer.routeWatch = new RouteWatch();
  if (icePolicy === "relay" && !hasTurnServer(state.iceServers)) {
    // Relay-only never falls back to a direct connection: say why nothing connects.
    ui.showStatus(
      gettext("To hide your IP address the call must go through a relay server, but none is available. Please contact your practice."),
      "warning",
    );
  }
  state.remoteStream = new MediaStream();
  const remoteVideo = ui.role("remote-video");
  remoteVideo.srcObject = state.remoteStream;
  peer.addEventListener("signal", (event) => state.signaling.send(event.detail));
  peer.addEventListener("track", (event) => {
    state.remoteStream.addTrack(event.detail.track);
    remoteVideo.play().catch(() => ui.setHidden("play-box", false));
  });
  peer.addEventListener("state", (event) => onPeerState(peer, event.detail));
  peer.addEventListener("channel-open", () => {
    // Introduce ourselves peer-to-peer: the patient learns the doctor's name this way
    // (the server names the doctor only to a patient who connects after the doctor).
    peer.sendData({ type: "hello", name: root.dataset.displayName || "" });
    chat.attach(peer, state.peerName);
    sendMediaState();
  });
  peer.addEventListener("channel-close", () => chat.setEnabled(false));
  peer.addEventListener("channel-message", (event) => onChannelMessage(event.detail));
  if (state.audioOnly) peer.setAudioOnly(true);
  state.quality = new QualityMonitor(peer.pc, (sample, level) => onQuality(peer, sample, level));
  state.quality.start();
  return peer;
}

function dropPeer() {
  if (state.quality) state.quality.stop();
  state.quality = null;
  if (state.peer) state.peer.close();
  state.peer = null;
  chat.attach(null);
  ui.role("remote-video").srcObject = null;
  ui.setText("safety-code", "–");
  ui.setState("safetyCode", "");
  ui.setState("iceState", "new");
  ui.setState("dtlsState", "new");
  ui.setState("connectionState", "new");
  ui.setHidden("quality-hint", true);
}

function onPeerState(peer, { ice, connection, dtls }) {
  if (peer !== state.peer) return;
  ui.setState("iceState", ice);
  ui.setState("dtlsState", dtls);
  ui.setState("connectionState", connection);
  if (connection === "connected") {
    ui.setHidden("remote-note", true);
    updateRemoteNote();
    showSafetyCode(peer);
  } else if (connection === "failed" || connection === "disconnected") {
    if (!state.peerPresent) {
      otherSideGone(gettext("The connection to the other side was lost."));
    } else {
      ui.setText("remote-note", gettext("Connection interrupted. Reconnecting…"));
      ui.setHidden("remote-note", false);
    }
  }
}

async function showSafetyCode(peer) {
  const code = await safetyCode(peer.pc.localDescription?.sdp, peer.pc.remoteDescription?.sdp);
  if (!code || peer !== state.peer) return;
  ui.setText("safety-code", code);
  ui.setState("safetyCode", code);
}

function onChannelMessage(message) {
  if (message.type === "chat") {
    chat.receive(message);
  } else if (message.type === "bye") {
    otherSideGone(
      isDoctor ? gettext("The patient has ended the call.") : gettext("The doctor has ended the call."),
    );
  } else if (message.type === "hello") {
    // The server's word (welcome, peer-waiting) wins over what the other browser says.
    if (!state.peerName && typeof message.name === "string") {
      setPeerName(message.name.slice(0, 80));
      chat.attach(state.peer, state.peerName);
    }
  } else if (message.type === "media") {
    state.remoteMedia = { camera: message.camera !== false, microphone: message.microphone !== false };
    updateRemoteNote();
  }
}

/** Tell the other side (peer-to-peer) whether our camera and microphone are on. */
function sendMediaState() {
  if (state.peer) {
    state.peer.sendData({ type: "media", camera: !state.cameraOff, microphone: !state.muted });
  }
}

function updateRemoteNote() {
  const peer = state.peer;
  if (!peer || peer.pc.connectionState !== "connected") return;
  const remote = state.remoteMedia || { camera: true, microphone: true };
  const audioOnly = state.audioOnly || !peer.remoteVideoActive();
  // The stylesheet hides both videos in audio-only mode (the sound keeps playing).
  ui.setState("media", audioOnly ? "audio" : "video");
  const notes = [];
  if (audioOnly) notes.push(gettext("Audio only"));
  else if (!remote.camera) notes.push(gettext("The other side has switched the camera off."));
  if (!remote.microphone) notes.push(gettext("The other side has muted the microphone."));
  ui.setText("remote-note", notes.join(" · "));
  ui.setHidden("remote-note", notes.length === 0);
}

// ---------------------------------------------------------------- quality indicator

const LEVEL_LABELS = {
  good: () => gettext("good"),
  fair: () => gettext("fair"),
  poor: () => gettext("poor"),
};

function onQuality(peer, sample, level) {
  if (peer !== state.peer) return;
  ui.setState("dtlsState", peer.dtlsState());
  const indicator = ui.role("quality");
  if (!sample.connected) {
    indicator.dataset.level = "unknown";
    ui.setText("quality-level", gettext("connecting"));
    ui.setText("route", "");
    ui.setState("route", "");
    return;
  }
  indicator.dataset.level = level;
  ui.setText("quality-level", LEVEL_LABELS[level]());
  ui.setText("route", sample.relayed ? gettext("via relay") : gettext("direct"));
  ui.setState("route", sample.relayed ? "relay" : "direct");
  const switched = peer.routeWatch.update(sample);
  if (switched) showRouteSwitch(switched);
  ui.setText("quality-details", describe(sample));
  updateRemoteNote();
  // Offer audio only after two poor samples in a row, not on a single spike.
  state.poorSamples = level === "poor" ? state.poorSamples + 1 : 0;
  ui.setHidden("quality-hint", state.audioOnly || state.poorSamples < 2);
}

/** A short, calm note when a running call moves between direct and relayed. */
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

function toggleAudioOnly() {
  state.audioOnly = !state.audioOnly;
  if (state.peer) state.peer.setAudioOnly(state.audioOnly);
  ui.setPressed("audio-only", state.audioOnly, gettext("Video on again"), gettext("Audio only"));
  ui.setHidden("quality-hint", true);
  state.poorSamples = 0;
  updateRemoteNote();
}

async function hangUp() {
  const peer = state.peer;
  if (peer && peer.sendData({ type: "bye" })) {
    // Give the data channel a moment to deliver the goodbye before closing.
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (state.signaling) state.signaling.send({ type: "bye" });
  finish(gettext("You have ended the call."));
}

/** End for good on this page: release devices, stop reconnecting. */
function finish(message, { error = false } = {}) {
  if (state.finished) return;
  state.finished = true;
  dropPeer();
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
});

ui.on("join", join);
ui.on("admit", admit);
ui.on("mute", toggleMute);
ui.on("camera", toggleCamera);
ui.on("audio-only", toggleAudioOnly);
ui.on("hangup", hangUp);
ui.on("rejoin", () => window.location.reload());
ui.on("play", () => {
  ui.role("remote-video").play().catch(() => {});
  ui.setHidden("play-box", true);
});
cameraSelect.addEventListener("change", onDeviceChoice);
micSelect.addEventListener("change", onDeviceChoice);

// For the end-to-end tests and for support: the live connection (read-only view).
Object.defineProperty(window, "redconnect", {
  value: Object.freeze({
    get pc() {
      return state.peer ? state.peer.pc : null;
    },
  }),
});

ui.setPhase("precheck");
openDevices().then(async (stream) => {
  await useStream(stream);
  for (const button of ui.actions("join")) button.disabled = false;
});
