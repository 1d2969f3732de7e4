// One RTCPeerConnection to one other participant, using the "perfect negotiation"
// pattern (WebRTC 1.0 specification, section "Perfect negotiation example"). A call of
// more than two people holds one of these per pair (mesh.js says who offers).
//
// Roles: the doctor is always the *impolite* peer; between two non-doctors mesh.js picks
// the polite one from both ids, so that both sides agree even if both made the first
// offer (the server's announcements of two near-simultaneous admissions can cross).
// When both sides offer at the same moment (e.g. both restart ICE), the impolite side's
// offer wins and the polite side rolls its own offer back. The side that does not make
// the first offer creates its connection lazily when that offer arrives.
//
// ICE is trickled (every candidate is sent as it is found, `null` at the end). When
// the connection fails, or stays "disconnected" for a few seconds, we restart ICE.
// Chat runs over a *negotiated* data channel with id 0, so both sides create it
// themselves and it never depends on who offered first.

import { shapeEncoding } from "./bandwidth.js";
import { fingerprintOf } from "./safety.js";

const DISCONNECTED_GRACE_MS = 4000;
// "balanced" lets the browser trade resolution and frame rate against each other under
// congestion; WebRTC's own congestion control picks the bitrate. Only a mesh of three or
// more shares the uplink out (bandwidth.js); a two-person call has no cap.
const DEGRADATION_PREFERENCE = "balanced";

/**
 * The RTCConfiguration of a connection. `policy` "relay" (relay-only mode, the patient
 * hides its IP address): the browser gathers and uses only TURN relay candidates, so
 * neither a host nor a server-reflexive address of ours ever reaches the other side.
 */
export function rtcConfiguration(iceServers, policy) {
  return { iceServers: iceServers || [], iceTransportPolicy: policy === "relay" ? "relay" : "all" };
}

/** True if the list has a TURN server (relay-only mode cannot connect without one). */
export function hasTurnServer(iceServers) {
  return (iceServers || []).some((server) =>
    [].concat(server.urls || []).some((url) => /^turns?:/.test(url)),
  );
}

/**
 * Events:
 *  - "signal": detail = a protocol message to send ({type: offer|answer|candidate, ...})
 *  - "track": detail {streams, track}
 *  - "state": detail {ice, connection, dtls, signaling} whenever any of them changes
 *  - "channel-open", "channel-close", "channel-message" (detail = parsed object)
 */
export class Peer extends EventTarget {
  /** `polite`: a boolean, or a function asked at each collision (ids can change). */
  constructor({ polite, offerer = !polite, iceServers, stream, icePolicy }) {
    super();
    this.politeness = polite;
    this.offerer = offerer;
    this.stream = stream;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pendingCandidates = [];
    this.disconnectTimer = null;
    this.closed = false;
    this.budget = null; // bandwidth.js budgetFor(): null = no cap
    this.parameterQueue = Promise.resolve();
    this.pc = new RTCPeerConnection(rtcConfiguration(iceServers, icePolicy));
    this.channel = this.pc.createDataChannel("chat", { negotiated: true, id: 0 });
    this.addLocalTracks();
    this.wire();
  }

  addLocalTracks() {
    for (const kind of ["audio", "video"]) {
      const track = this.stream ? this.stream.getTracks().find((t) => t.kind === kind) : null;
      if (track) {
        this.pc.addTrack(track, this.stream);
      } else if (this.offerer) {
        // No device of this kind: still offer to *receive* it from the other side.
        this.pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  wire() {
    const pc = this.pc;
    pc.addEventListener("negotiationneeded", () => this.negotiate());
    pc.addEventListener("icecandidate", ({ candidate }) => {
      // Trickle ICE: send each candidate at once; `null` marks the end of gathering.
      this.emit("signal", { type: "candidate", candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("track", ({ track, streams }) => this.emit("track", { track, streams }));
    pc.addEventListener("iceconnectionstatechange", () => this.onIceState());
    pc.addEventListener("connectionstatechange", () => this.onConnectionState());
    pc.addEventListener("signalingstatechange", () => this.emitState());
    this.channel.addEventListener("open", () => this.emit("channel-open"));
    this.channel.addEventListener("close", () => this.emit("channel-close"));
    this.channel.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === "string") this.emit("channel-message", message);
    });
  }

  get polite() {
    return typeof this.politeness === "function" ? this.politeness() : this.politeness;
  }

  async negotiate() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.emit("signal", { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp });
    } catch (error) {
      console.warn("negotiation failed", error.name);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Send a new offer now (the doctor does this on every `admitted`). */
  offer({ iceRestart = false } = {}) {
    if (iceRestart) {
      this.pc.restartIce(); // fires negotiationneeded, which sends the offer
    } else {
      this.negotiate();
    }
  }

  /** True if `sdp` comes from a different remote connection than the current one. */
  isForeign(sdp) {
    const current = this.pc.remoteDescription;
    if (!current || !current.sdp) return false;
    return fingerprintOf(current.sdp) !== fingerprintOf(sdp);
  }

  async handleDescription(type, sdp) {
    const pc = this.pc;
    const offerCollision = type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && offerCollision;
    if (this.ignoreOffer) return;
    // The polite side rolls back its own offer implicitly in setRemoteDescription.
    await pc.setRemoteDescription({ type, sdp });
    await this.flushCandidates();
    if (type === "offer") {
      await pc.setLocalDescription();
      this.emit("signal", { type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    }
    this.applyDegradationPreference();
  }

  async addCandidate(candidate) {
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    try {
      // `null` (end of candidates) becomes a call without candidate.
      await (candidate ? this.pc.addIceCandidate(candidate) : this.pc.addIceCandidate());
    } catch (error) {
      // Candidates of an offer we ignored (glare) are expected to fail.
      if (!this.ignoreOffer && candidate) console.warn("candidate refused", error.name);
    }
  }

  async flushCandidates() {
    const queued = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of queued) await this.addCandidate(candidate);
  }

  onIceState() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.disconnectTimer);
    if (state === "failed") {
      this.pc.restartIce();
    } else if (state === "disconnected") {
      // Short outages often heal by themselves (e.g. Wi-Fi roaming); restart if not.
      this.disconnectTimer = setTimeout(() => {
        if (this.pc.iceConnectionState === "disconnected") this.pc.restartIce();
      }, DISCONNECTED_GRACE_MS);
    }
    this.emitState();
  }

  onConnectionState() {
    if (this.pc.connectionState === "connected") this.applyDegradationPreference();
    this.emitState();
  }

  /** The DTLS transport's state (the encryption layer), or the overall state as fallback. */
  dtlsState() {
    const transports = [this.pc.sctp && this.pc.sctp.transport];
    for (const sender of this.pc.getSenders()) transports.push(sender.transport);
    const transport = transports.find((candidate) => candidate);
    return transport ? transport.state : "new";
  }

  emitState() {
    if (this.closed) return;
    this.emit("state", {
      ice: this.pc.iceConnectionState,
      connection: this.pc.connectionState,
      dtls: this.dtlsState(),
      signaling: this.pc.signalingState,
    });
  }

  /** Share of the uplink for this pair (bandwidth.js), applied to the senders now. */
  setBudget(budget) {
    this.budget = budget;
    return this.applyDegradationPreference();
  }

  /**
   * Set degradationPreference on every video sender (adaptive quality) and the pair's
   * uplink share, if any. Serialised: two overlapping setParameters calls on one sender
   * would fail (each needs the transaction of its own getParameters).
   */
  applyDegradationPreference() {
    this.parameterQueue = this.parameterQueue.then(() => this.applySenderParameters());
    return this.parameterQueue;
  }

  async applySenderParameters() {
    if (this.closed) return;
    for (const sender of this.pc.getSenders()) {
      if (!sender.track) continue;
      const parameters = sender.getParameters();
      if (!parameters.encodings || parameters.encodings.length === 0) continue;
      let changed = false;
      if (sender.track.kind === "video" && parameters.degradationPreference !== DEGRADATION_PREFERENCE) {
        parameters.degradationPreference = DEGRADATION_PREFERENCE;
        changed = true;
      }
      for (const encoding of parameters.encodings) {
        if (shapeEncoding(sender.track.kind, encoding, this.budget)) changed = true;
      }
      if (!changed) continue;
      try {
        await sender.setParameters(parameters);
      } catch (error) {
        console.warn("sender parameters not applied", error.name);
      }
    }
  }

  /** Replace the outgoing track of one kind (device change) without renegotiation. */
  async replaceTrack(kind, track) {
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === kind);
    if (sender) await sender.replaceTrack(track);
  }

  /**
   * Audio only: stop sending *and* receiving video. Setting the video transceiver to
   * "inactive" renegotiates, so the other side stops sending video to us as well.
   */
  setAudioOnly(audioOnly) {
    for (const transceiver of this.pc.getTransceivers()) {
      const kind = transceiver.receiver.track && transceiver.receiver.track.kind;
      if (kind !== "video" || transceiver.stopped) continue;
      const hasTrack = Boolean(transceiver.sender.track);
      transceiver.direction = audioOnly ? "inactive" : hasTrack ? "sendrecv" : "recvonly";
    }
  }

  /** True while the other side receives no video from us and sends none. */
  remoteVideoActive() {
    return this.pc
      .getTransceivers()
      .some(
        (t) =>
          t.receiver.track &&
          t.receiver.track.kind === "video" &&
          (t.currentDirection === "sendrecv" || t.currentDirection === "recvonly"),
      );
  }

  /** Send a small object to the other side over the data channel (peer-to-peer). */
  sendData(message) {
    if (this.channel.readyState !== "open") return false;
    this.channel.send(JSON.stringify(message));
    return true;
  }

  get channelOpen() {
    return this.channel.readyState === "open";
  }

  close() {
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    this.pc.close();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
