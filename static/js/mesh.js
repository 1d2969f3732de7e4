// Who connects to whom in a call of up to nine people (shared contract, "More than two
// participants"). Pure functions without DOM or WebRTC, so node can test them.
//
// Media is a mesh: one RTCPeerConnection per pair of admitted participants. For every
// pair exactly one side makes the first offer, and both sides must agree which one, or
// both would offer (glare) or neither would:
//  - the doctor offers to everyone it receives `admitted` for;
//  - between two non-doctors, the one admitted earlier offers to the newcomer, i.e. on
//    `participant-joined`; the newcomer waits for offers from everyone already there.
// Glare (both sides offering at once) is resolved by perfect negotiation: the doctor is
// always the impolite side; between two non-doctors the one with the greater id is
// polite. That is decided from the ids alone, so both sides agree even when the server's
// announcements of two admissions crossed and both sides made the first offer.

export const DOCTOR = "doctor";
export const PATIENT = "patient";
export const GUEST = "guest";
export const MAX_PARTICIPANTS = 9;

/**
 * Does `selfRole` send the first offer to a participant of `otherRole` it has just been
 * told about by the server message `event` ("admitted" or "participant-joined")?
 */
export function offersTo(selfRole, event, otherRole) {
  if (selfRole === DOCTOR) return event === "admitted";
  if (otherRole === DOCTOR) return false; // the doctor offers to everyone
  return event === "participant-joined"; // we were admitted before the newcomer
}

/** The polite side of a pair (perfect negotiation), the same answer on both ends. */
export function isPolite(selfRole, otherRole, selfId, otherId) {
  if (selfRole === DOCTOR) return false;
  if (otherRole === DOCTOR) return true;
  return String(selfId) > String(otherId);
}

const ROLE_RANK = { [DOCTOR]: 0, [PATIENT]: 1, [GUEST]: 2 };

/**
 * Order of the tiles: the doctor, then the patient, then guests in the order they were
 * admitted (`since`, a counter), so that nobody's tile jumps around.
 */
export function tileOrder(participants) {
  return [...participants].sort(
    (a, b) => (ROLE_RANK[a.role] ?? 3) - (ROLE_RANK[b.role] ?? 3) || a.since - b.since,
  );
}

/**
 * The one peer whose connection a two-person call's page shows as *the* connection
 * (root state, window.redconnect.pc): for the doctor the patient, for everyone else the
 * doctor; otherwise the first tile.
 */
export function primaryPeer(selfRole, participants) {
  const wanted = selfRole === DOCTOR ? PATIENT : DOCTOR;
  const ordered = tileOrder(participants);
  return ordered.find((p) => p.role === wanted) || ordered[0] || null;
}

/**
 * The server's id of a participant in a message, with a fallback for a server that does
 * not send ids yet (a two-person call then has one seat per role).
 */
export function idOf(message, key, fallbackRole) {
  const value = message[key];
  return typeof value === "string" && value ? value : fallbackRole;
}
