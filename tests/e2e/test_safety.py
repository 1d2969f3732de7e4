"""Issue 11 item 13: the safety code comes from the certificates DTLS actually used.

A real call between two Chromium browsers. On the patient's side the SDP text differs
from what DTLS uses (see TAMPER_JS): a code read from the SDP's fingerprint lines would
now differ between the two sides; the code from getStats() does not. Both codes must equal
the one computed here from the certificates each browser's DTLS transport reports, and
each side's remote certificate must be the other side's local one.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_call import (
    PATIENT_NAME,
    admit_and_connect,
    join_as_doctor,
    join_waiting,
    open_participant,
    safety_code_of,
)
from tests.support.live import manage_json

pytestmark = pytest.mark.e2e

BOGUS = "a=fingerprint:sha-256 " + ":".join(["5A"] * 32)
SHA1 = "a=fingerprint:sha-1 " + ":".join(["5A"] * 20)

# Run before the page's scripts on the patient's side. (1) Every remote description gets
# an extra session-level fingerprint of another hash function, as a signaling server
# could add (the browser accepts it and uses the media-level lines for DTLS). (2) The
# page reads `remoteDescription` through a getter that shows a foreign sha-256 value in
# place of every fingerprint: what a code derived from SDP text would be computed from,
# while DTLS verifies the real certificate underneath.
TAMPER_JS = """
(() => {
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (description) {
    if (description && description.sdp && !description.sdp.includes("a=fingerprint:sha-1")) {
      const sdp = description.sdp.replace(/^(t=.*\\r?\\n)/m, "$1SHA1_LINE\\r\\n");
      window.__tamperedSdp = sdp;
      description = { type: description.type, sdp };
    }
    return original.call(this, description);
  };
  const getter = Object.getOwnPropertyDescriptor(
    RTCPeerConnection.prototype, "remoteDescription").get;
  Object.defineProperty(RTCPeerConnection.prototype, "remoteDescription", {
    configurable: true,
    get() {
      const real = getter.call(this);
      if (!real) return real;
      const sdp = real.sdp.replace(/^a=fingerprint:.*$/gm, "BOGUS_LINE");
      return { type: real.type, sdp, toJSON: () => ({ type: real.type, sdp }) };
    },
  });
})();
""".replace("BOGUS_LINE", BOGUS).replace(
    "SHA1_LINE", "a=fingerprint:sha-1 " + ":".join(["5A"] * 20)
)

CERTIFICATES_JS = """
async () => {
  const pc = window.redconnect.pc;
  const report = await pc.getStats();
  const result = {local: [], remote: [], firstRemoteSdpLine: null, localSdpLine: null};
  report.forEach((stats) => {
    if (stats.type !== "transport" || stats.dtlsState !== "connected") return;
    for (const [side, id] of [["local", stats.localCertificateId],
                              ["remote", stats.remoteCertificateId]]) {
      const cert = report.get(id);
      result[side].push(cert.fingerprintAlgorithm.toLowerCase() + " " +
                        cert.fingerprint.toUpperCase());
    }
  });
  const first = /^a=fingerprint:.*$/m;
  result.firstRemoteSdpLine = (pc.remoteDescription.sdp.match(first) || [null])[0];
  result.firstAcceptedSdpLine = ((window.__tamperedSdp || "").match(first) || [null])[0];
  result.localSdpLine = (pc.localDescription.sdp.match(first) || [null])[0];
  return result;
}
"""


@pytest.fixture(scope="module")
def tampered_call(live_site, browser):
    server, seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    patient = open_participant(browser, server.url)
    patient.page.context.add_init_script(TAMPER_JS)
    doctor = open_participant(browser, server.url)

    join_waiting(patient, appointment["patient_code"], PATIENT_NAME)
    join_as_doctor(doctor, seed["doctor"]["username"], appointment["doctor_code"])
    admit_and_connect(doctor, patient)
    for participant in (doctor, patient):
        participant.wait_state("safety-code", r"^\d{4} \d{4}$")
    yield doctor, patient
    for participant in (doctor, patient):
        participant.page.context.close()


def test_the_safety_code_is_the_one_of_the_certificates_dtls_used(tampered_call):
    doctor, patient = tampered_call
    mine = doctor.page.evaluate(CERTIFICATES_JS)
    theirs = patient.page.evaluate(CERTIFICATES_JS)
    # The tampering took effect: the SDP the patient's browser accepted starts with the
    # extra sha-1 line, and the page sees a foreign sha-256 value in the remote SDP.
    assert theirs["firstAcceptedSdpLine"].startswith("a=fingerprint:sha-1 ")
    assert theirs["firstRemoteSdpLine"] == BOGUS
    assert mine["firstRemoteSdpLine"] != BOGUS and mine["firstAcceptedSdpLine"] is None
    # DTLS: each side's remote certificate is the other side's own, and it is the one
    # the other browser declared in its own (untampered) local description.
    assert mine["remote"] == theirs["local"] and theirs["remote"] == mine["local"]
    assert len(mine["local"]) == 1
    for side in (mine, theirs):
        declared = side["localSdpLine"].removeprefix("a=fingerprint:")
        assert declared.lower() == side["local"][0].lower()
    expected = safety_code_of({*mine["local"], *mine["remote"]})
    assert doctor.state("safety-code") == patient.state("safety-code") == expected
    assert patient.page.text_content('[data-role="safety-code"]') == expected
    for participant in (doctor, patient):
        assert participant.problems == []
