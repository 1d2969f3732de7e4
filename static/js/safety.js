// Safety code: a short number both participants read aloud to each other.
//
// The code is derived from SHA-256 over the DTLS certificate fingerprints of *both*
// sides, sorted so that both get the same input. The fingerprints come from the
// transport itself (getStats: RTCTransportStats.localCertificateId/remoteCertificateId →
// RTCCertificateStats.fingerprint), i.e. from the certificates DTLS actually used — not
// from the SDP text, where a tampering signaling server could put the genuine
// fingerprint first and its own further down. If someone sat in the middle, each side
// would have negotiated DTLS with the intruder, see a different remote certificate, and
// the two codes would differ — which the participants notice when they compare them.
//
// `safetyCode(pc)` works per RTCPeerConnection, so a page with several connections (a
// mesh) shows one code per pair.

const CODE_DIGITS = 8; // about 26 bits: far too many to grind during a call

/** "sha-256 AB:CD:…" from the first a=fingerprint line of an SDP, or null. Only for
 * noticing that the other side restarted with a new certificate, never for the code. */
export function fingerprintOf(sdp) {
  const match = /^a=fingerprint:(\S+)[ \t]+([0-9A-Fa-f:]+)[ \t]*$/m.exec(sdp || "");
  return match ? `${match[1].toLowerCase()} ${match[2].toUpperCase()}` : null;
}

function formatCertificate(stats) {
  if (!stats || !stats.fingerprint || !stats.fingerprintAlgorithm) return null;
  return `${stats.fingerprintAlgorithm.toLowerCase()} ${stats.fingerprint.toUpperCase()}`;
}

/** The certificates of every DTLS transport that is connected: {local: [...], remote:
 * [...]} with "sha-256 AB:…" entries, or null while there is none. */
export async function transportFingerprints(pc) {
  const report = await pc.getStats();
  const local = new Set();
  const remote = new Set();
  report.forEach((stats) => {
    if (stats.type !== "transport" || stats.dtlsState !== "connected") return;
    const mine = formatCertificate(report.get(stats.localCertificateId));
    const theirs = formatCertificate(report.get(stats.remoteCertificateId));
    if (mine && theirs) {
      local.add(mine);
      remote.add(theirs);
    }
  });
  if (!local.size || !remote.size) return null;
  return { local: [...local], remote: [...remote] };
}

/** The code as "1234 5678" for a set of fingerprints (order does not matter). */
export async function codeFromFingerprints(fingerprints) {
  const unique = [...new Set(fingerprints)].sort();
  const input = new TextEncoder().encode(unique.join("\n"));
  const digest = new DataView(await crypto.subtle.digest("SHA-256", input));
  // 48 bits from the digest, reduced to the number of digits we show.
  const value = digest.getUint32(0) * 0x10000 + digest.getUint16(4);
  const digits = String(value % 10 ** CODE_DIGITS).padStart(CODE_DIGITS, "0");
  return `${digits.slice(0, 4)} ${digits.slice(4)}`;
}

/** The safety code of one RTCPeerConnection, or null while DTLS is not connected. */
export async function safetyCode(pc) {
  const prints = pc ? await transportFingerprints(pc) : null;
  if (!prints) return null;
  return codeFromFingerprints([...prints.local, ...prints.remote]);
}
