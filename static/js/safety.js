// Safety code: a short number both participants read aloud to each other.
//
// Each browser's DTLS certificate fingerprint is in its SDP (`a=fingerprint:`). The
// code is derived from SHA-256 over *both* fingerprints, sorted so that both sides get
// the same input. If someone sat in the middle (e.g. a compromised signaling server
// swapping the SDPs), each side would see a different remote fingerprint and the two
// codes would differ — which the participants notice when they compare them aloud.

const CODE_DIGITS = 8; // about 26 bits: far too many to grind during a call

/** "sha-256 AB:CD:…" from the first a=fingerprint line of an SDP, or null. */
export function fingerprintOf(sdp) {
  const match = /^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$/m.exec(sdp || "");
  return match ? `${match[1].toLowerCase()} ${match[2].toUpperCase()}` : null;
}

/** The code as "1234 5678", or null while a fingerprint is still missing. */
export async function safetyCode(localSdp, remoteSdp) {
  const local = fingerprintOf(localSdp);
  const remote = fingerprintOf(remoteSdp);
  if (!local || !remote) return null;
  const input = new TextEncoder().encode([local, remote].sort().join("\n"));
  const digest = new DataView(await crypto.subtle.digest("SHA-256", input));
  // 48 bits from the digest, reduced to the number of digits we show.
  const value = digest.getUint32(0) * 0x10000 + digest.getUint16(4);
  const digits = String(value % 10 ** CODE_DIGITS).padStart(CODE_DIGITS, "0");
  return `${digits.slice(0, 4)} ${digits.slice(4)}`;
}
