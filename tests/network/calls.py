"""Opening a call between the two lab browsers and reading it back via getStats.

The join steps are the end-to-end tests' (tests/e2e/test_call.py): the patient enters
name and code on the join page, the doctor logs in and enters the doctor code, the
doctor admits the patient. Everything is read from the page's live RTCPeerConnection
(`window.redconnect.pc`, see PC_JS).
"""

from __future__ import annotations

import re

from tests.e2e.test_call import (
    PATIENT_NAME,
    Participant,
    open_participant,
    pass_device_check,
)
from tests.network.conftest import DEMO_PASSWORD
from tests.support.live import manage_json

CONNECT_TIMEOUT_MS = 45_000

# The page's peer connection to the other side (one per pair once the page is a mesh).
PC_JS = "(window.redconnect.pc)"

# Every remote candidate the page is given (trickled or in a description) is recorded
# before the browser sees it: this is what "reaches the doctor's browser".
RECORD_CANDIDATES_JS = """
(() => {
  window.__remoteCandidates = [];
  const add = RTCPeerConnection.prototype.addIceCandidate;
  RTCPeerConnection.prototype.addIceCandidate = function (candidate, ...rest) {
    if (candidate && candidate.candidate) window.__remoteCandidates.push(candidate.candidate);
    return add.call(this, candidate, ...rest);
  };
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (description, ...rest) {
    if (description && description.sdp) {
      for (const line of description.sdp.split(/\\r?\\n/)) {
        if (line.startsWith("a=candidate:")) window.__remoteCandidates.push(line.slice(2));
      }
      window.__remoteSdps = (window.__remoteSdps || []).concat([description.sdp]);
    }
    return setRemote.call(this, description, ...rest);
  };
})();
"""

STATS_JS = """
async () => {
  const pc = PC;
  if (!pc) return null;
  const report = await pc.getStats();
  const r = {ice: pc.iceConnectionState, local: null, remote: null, remoteCandidates: [],
             localSdp: pc.localDescription && pc.localDescription.sdp,
             remoteSdp: pc.remoteDescription && pc.remoteDescription.sdp,
             framesDecoded: 0, width: 0, height: 0, videoBytesIn: 0,
             audioPacketsIn: 0, audioBytesIn: 0, videoBytesOut: 0, sendWidth: 0,
             sendHeight: 0, limitation: null, availableOutgoingBitrate: null};
  const describe = (c) => c && {type: c.candidateType, address: c.address || c.ip,
                                port: c.port, protocol: c.protocol,
                                relayProtocol: c.relayProtocol || null, url: c.url || null};
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = report.get(s.selectedCandidatePairId);
      r.local = describe(report.get(pair.localCandidateId));
      r.remote = describe(report.get(pair.remoteCandidateId));
      r.availableOutgoingBitrate = pair.availableOutgoingBitrate ?? null;
    }
    if (s.type === "remote-candidate") r.remoteCandidates.push(describe(s));
    if (s.type === "inbound-rtp" && s.kind === "video") {
      r.framesDecoded = s.framesDecoded || 0; r.width = s.frameWidth || 0;
      r.height = s.frameHeight || 0; r.videoBytesIn = s.bytesReceived || 0;
    }
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      r.audioPacketsIn = s.packetsReceived || 0; r.audioBytesIn = s.bytesReceived || 0;
    }
    if (s.type === "outbound-rtp" && s.kind === "video") {
      r.videoBytesOut = s.bytesSent || 0; r.sendWidth = s.frameWidth || 0;
      r.sendHeight = s.frameHeight || 0; r.limitation = s.qualityLimitationReason || null;
    }
  });
  return r;
}
""".replace("PC", PC_JS)

FRAMES_ABOVE_JS = """
async (count) => { const pc = PC; if (!pc) return false;
  let frames = 0; (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0; });
  return frames > count; }
""".replace("PC", PC_JS)


def stats(participant: Participant) -> dict:
    return participant.page.evaluate(STATS_JS)


def wait_frames_above(participant: Participant, count: int, timeout: int = 30_000) -> int:
    participant.page.wait_for_function(FRAMES_ABOVE_JS, arg=count, timeout=timeout, polling=250)
    return stats(participant)["framesDecoded"]


def decodes_video_both_ways(doctor: Participant, patient: Participant) -> None:
    """framesDecoded > 0 on both sides, and still increasing."""
    for participant in (doctor, patient):
        first = wait_frames_above(participant, 0)
        wait_frames_above(participant, first + 10)


def join_page(page, code: str, name: str = "", hide_ip: bool = False) -> None:
    page.goto("/")
    form = page.locator("form.join-form")
    form.locator("input[name=code]").fill(code)
    if name:
        form.locator("input[name=name]").fill(name)
        form.locator("input[name=consent]").check()
    if hide_ip:
        form.locator("input[name=hide_ip]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/call/")


def open_call(lab, browsers, hide_ip: bool = False) -> tuple[Participant, Participant]:
    """A connected call: doctor (practice namespace) and patient (home namespace)."""
    practice_browser, home_browser = browsers
    appointment = manage_json(lab.env, "create_appointment", "--doctor", "demo-arzt")
    patient = open_participant(home_browser, lab.url)
    doctor = open_participant(practice_browser, lab.url)
    for participant in (doctor, patient):
        participant.page.set_default_timeout(CONNECT_TIMEOUT_MS)
        participant.page.add_init_script(RECORD_CANDIDATES_JS)

    join_page(patient.page, appointment["patient_code"], PATIENT_NAME, hide_ip=hide_ip)
    pass_device_check(patient)
    patient.wait_state("ws-state", "^open$", timeout=CONNECT_TIMEOUT_MS)

    doctor.page.goto("/admin/login/")
    doctor.page.fill("input[name=username]", lab.seed["doctor"]["username"])
    doctor.page.fill("input[name=password]", DEMO_PASSWORD)
    doctor.page.locator("input[type=submit]").click()
    doctor.page.wait_for_url(re.compile(r"/admin/"))
    join_page(doctor.page, appointment["doctor_code"])
    pass_device_check(doctor)
    doctor.page.locator('[data-role="admit-box"]').wait_for(state="visible")
    doctor.page.locator('[data-action="admit"]').click()
    for participant in (doctor, patient):
        participant.wait_state("connection-state", "^connected$", timeout=CONNECT_TIMEOUT_MS)
    return doctor, patient


def close_call(*participants: Participant) -> None:
    for participant in participants:
        participant.page.context.close()


def fingerprint(sdp: str) -> str:
    return re.search(r"^a=fingerprint:.*$", sdp, re.M).group().strip()
