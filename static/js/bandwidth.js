// Uplink budget in a mesh call: the one place where the client limits a send bitrate.
//
// In a mesh every participant sends its camera and microphone once per peer, so a call
// of nine sends eight copies over one home uplink. Each RTCPeerConnection's congestion
// control only sees its own path and would claim the whole uplink for itself; together
// they overload it and everybody's audio breaks up. So from three participants on, the
// sender splits an uplink budget over its peers: audio first (a reserved share and a high
// send priority), video gets the rest of each share and a lower resolution as the number
// of peers grows. Inside its share WebRTC's congestion control still adapts the rate
// (KBV § 5 Nr. 7), and the audio-only switch stays with the participants.
//
// A two-person call (one peer) keeps the previous behaviour: no cap at all, congestion
// control alone. The compliance check for Nr. 7 ("no fixed bitrate caps") knows this
// module by name and checks that it keeps to that rule.

/** From this many people in the call (oneself included) the uplink is shared out. */
export const SHARE_FROM_PARTICIPANTS = 3;
/** What we assume a participant can send: a ~2 Mbit/s uplink, less headroom. */
export const UPLINK_BUDGET_KBPS = 1600;
/** Reserved per peer for Opus speech and its packet overhead (audio first). */
export const AUDIO_RESERVE_KBPS = 48;
/** Below this video is no longer worth its packets; it gets at least this much. */
export const MIN_VIDEO_KBPS = 60;

/** Resolution step for a video share: full size for a generous share, ¼ for a tiny one. */
function resolutionScale(videoKbps) {
  if (videoKbps >= 700) return 1;
  if (videoKbps >= 300) return 2;
  if (videoKbps >= 150) return 3;
  return 4;
}

/**
 * The budget for one peer connection when `participants` people are in the call, or
 * null for "no cap" (fewer than three people).
 */
export function budgetFor(participants, uplinkKbps = UPLINK_BUDGET_KBPS) {
  if (!Number.isFinite(participants) || participants < SHARE_FROM_PARTICIPANTS) return null;
  const peers = participants - 1;
  const shareKbps = Math.floor(uplinkKbps / peers);
  const videoKbps = Math.max(MIN_VIDEO_KBPS, shareKbps - AUDIO_RESERVE_KBPS);
  return {
    peers,
    shareKbps,
    audioKbps: AUDIO_RESERVE_KBPS,
    videoKbps,
    scaleResolutionDownBy: resolutionScale(videoKbps),
  };
}

/**
 * Shape one sender encoding (an entry of RTCRtpSendParameters.encodings) for `kind`
 * ("audio" | "video") and a budget from budgetFor(); `null` removes every limit again
 * (e.g. when a call of three shrinks to two). Returns true if the encoding changed.
 */
export function shapeEncoding(kind, encoding, budget) {
  const before = JSON.stringify(encoding);
  if (kind === "video") {
    if (budget) {
      encoding.maxBitrate = budget.videoKbps * 1000;
      encoding.scaleResolutionDownBy = budget.scaleResolutionDownBy;
      encoding.priority = "low";
      encoding.networkPriority = "low";
    } else {
      delete encoding.maxBitrate;
      if (encoding.scaleResolutionDownBy) encoding.scaleResolutionDownBy = 1;
    }
  } else if (kind === "audio" && budget) {
    // Never capped: audio goes first, as far as the browser honours priorities.
    encoding.priority = "high";
    encoding.networkPriority = "high";
  }
  return JSON.stringify(encoding) !== before;
}
