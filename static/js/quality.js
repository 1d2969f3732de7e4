// Live connection quality from RTCPeerConnection.getStats(), sampled every 2 seconds.
//
// We only *show* quality and let the participants decide (§ 5 Nr. 7): WebRTC's own
// congestion control adapts the bitrate, and when quality is poor we offer the switch
// to audio only. Nothing here limits a bitrate.

const INTERVAL_MS = 2000;

// Thresholds for the three levels. Round-trip time in ms, loss as a fraction.
const POOR = { rtt: 400, loss: 0.08, outgoingKbps: 60 };
const FAIR = { rtt: 200, loss: 0.02, outgoingKbps: 150 };

/** The candidate pair the connection uses right now (spec field, then fallback). */
function selectedPair(report) {
  for (const stats of report.values()) {
    if (stats.type === "transport" && stats.selectedCandidatePairId) {
      return report.get(stats.selectedCandidatePairId) || null;
    }
  }
  for (const stats of report.values()) {
    if (stats.type === "candidate-pair" && (stats.selected || (stats.nominated && stats.state === "succeeded"))) {
      return stats;
    }
  }
  return null;
}

/** Sum a counter over all stats of a type (and kind, if given). */
function total(report, type, field, kind) {
  let sum = 0;
  for (const stats of report.values()) {
    if (stats.type === type && (!kind || stats.kind === kind) && typeof stats[field] === "number") {
      sum += stats[field];
    }
  }
  return sum;
}

function firstOf(report, type, kind) {
  for (const stats of report.values()) if (stats.type === type && stats.kind === kind) return stats;
  return null;
}

/** Turn two consecutive reports into one sample of numbers the UI can show. */
export function sample(report, previous, seconds) {
  const pair = selectedPair(report);
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  const inboundVideo = firstOf(report, "inbound-rtp", "video");
  const outboundVideo = firstOf(report, "outbound-rtp", "video");
  const counters = {
    bytesIn: total(report, "inbound-rtp", "bytesReceived"),
    bytesOut: total(report, "outbound-rtp", "bytesSent"),
    lost: total(report, "inbound-rtp", "packetsLost"),
    received: total(report, "inbound-rtp", "packetsReceived"),
  };
  const delta = (field) => (previous ? Math.max(0, counters[field] - previous[field]) : 0);
  const lostNow = delta("lost");
  const packetsNow = lostNow + delta("received");
  // What the other side reports about the packets *we* send (RTCP receiver reports).
  let remoteLoss = 0;
  for (const stats of report.values()) {
    if (stats.type === "remote-inbound-rtp" && typeof stats.fractionLost === "number") {
      remoteLoss = Math.max(remoteLoss, stats.fractionLost);
    }
  }
  return {
    counters,
    connected: Boolean(pair),
    relayed: Boolean(local && remote && (local.candidateType === "relay" || remote.candidateType === "relay")),
    localCandidateType: local ? local.candidateType : null,
    remoteCandidateType: remote ? remote.candidateType : null,
    rttMs: pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null,
    loss: Math.max(packetsNow > 0 ? lostNow / packetsNow : 0, remoteLoss),
    kbpsIn: previous && seconds > 0 ? (delta("bytesIn") * 8) / 1000 / seconds : null,
    kbpsOut: previous && seconds > 0 ? (delta("bytesOut") * 8) / 1000 / seconds : null,
    outgoingKbps:
      pair && typeof pair.availableOutgoingBitrate === "number" ? pair.availableOutgoingBitrate / 1000 : null,
    width: inboundVideo ? inboundVideo.frameWidth || 0 : 0,
    height: inboundVideo ? inboundVideo.frameHeight || 0 : 0,
    fps: inboundVideo ? inboundVideo.framesPerSecond || 0 : 0,
    framesDecoded: inboundVideo ? inboundVideo.framesDecoded || 0 : 0,
    sendWidth: outboundVideo ? outboundVideo.frameWidth || 0 : 0,
  };
}

/** "good" | "fair" | "poor" (msgids good/fair/poor in the UI). */
export function rate(s) {
  if (!s.connected) return "poor";
  const rtt = s.rttMs ?? 0;
  const outgoing = s.outgoingKbps ?? Infinity;
  if (rtt > POOR.rtt || s.loss > POOR.loss || outgoing < POOR.outgoingKbps) return "poor";
  if (rtt > FAIR.rtt || s.loss > FAIR.loss || outgoing < FAIR.outgoingKbps) return "fair";
  return "good";
}

/** "relay" | "direct" for a connected sample, null while there is no selected pair. */
export function routeOf(s) {
  if (!s.connected) return null;
  return s.relayed ? "relay" : "direct";
}

/**
 * Follows one connection's route (one per peer connection). `update(sample)` returns the
 * new route when a running call switched between direct and relayed, else null; the
 * first route of a connection is no switch.
 */
export class RouteWatch {
  constructor() {
    this.route = null;
  }

  update(s) {
    const route = routeOf(s);
    if (!route) return null;
    const previous = this.route;
    this.route = route;
    return previous && previous !== route ? route : null;
  }
}

/** Polls getStats every 2 s and calls onSample(sample, level). */
export class QualityMonitor {
  constructor(pc, onSample) {
    this.pc = pc;
    this.onSample = onSample;
    this.timer = null;
    this.previous = null;
    this.previousTime = 0;
  }

  start() {
    this.stop();
    this.timer = setInterval(() => this.poll(), INTERVAL_MS);
    this.poll();
  }

  async poll() {
    if (this.pc.connectionState === "closed") return;
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return; // the connection was closed while we asked
    }
    const now = performance.now();
    const seconds = (now - this.previousTime) / 1000;
    const current = sample(report, this.previous, seconds);
    this.previous = current.counters;
    this.previousTime = now;
    this.onSample(current, rate(current));
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}
