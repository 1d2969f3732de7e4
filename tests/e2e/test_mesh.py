"""A real three-person call: doctor, patient and an interpreter (guest), each in its own
Chromium browser context, through a real daphne server.

Everyone joins as people do (join form with their own code, admin login for the doctor,
device check, the doctor lets each person in from the waiting list). Then every browser
decodes the video of both others over direct host-to-host pairs (a mesh: one connection
per pair, no media server, KBV § 5 Nr. 5), the safety codes of each pair agree, chat
reaches everyone, and the uplink is shared out (three people). The doctor sends the
interpreter back to the waiting room: it sees and hears nothing more (Nr. 4), and doctor
and patient keep talking, uncapped again.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.test_call import (
    TIMEOUT_MS,
    Participant,
    fill_join_form,
    join_as_doctor,
    join_waiting,
    open_participant,
)
from tests.support.live import manage_json

pytestmark = pytest.mark.e2e

PATIENT_NAME = "Erika Mustermann"
GUEST_NAME = "Dolmetscherin Ayşe Yılmaz"

# Per pair (keyed by the other side's id): states, route, decoded frames, sender caps.
PAIRS_JS = """
async () => {
  const result = {};
  for (const [id, pc] of Object.entries(window.redconnect.peers)) {
    const report = await pc.getStats();
    const pair = {connection: pc.connectionState, framesDecoded: 0, local: null, remote: null,
                  dtls: null, maxBitrate: null, scale: null,
                  remoteFingerprint: /a=fingerprint:(.*)/.exec(pc.remoteDescription
                    ? pc.remoteDescription.sdp : "")?.[1] || null,
                  localFingerprint: /a=fingerprint:(.*)/.exec(pc.localDescription
                    ? pc.localDescription.sdp : "")?.[1] || null};
    report.forEach((stats) => {
      if (stats.type === "transport" && stats.selectedCandidatePairId) {
        pair.dtls = stats.dtlsState;
        const selected = report.get(stats.selectedCandidatePairId);
        pair.local = report.get(selected.localCandidateId).candidateType;
        pair.remote = report.get(selected.remoteCandidateId).candidateType;
      }
      if (stats.type === "inbound-rtp" && stats.kind === "video") {
        pair.framesDecoded = stats.framesDecoded || 0;
      }
    });
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== "video") continue;
      const encoding = sender.getParameters().encodings[0] || {};
      pair.maxBitrate = encoding.maxBitrate || null;
      pair.scale = encoding.scaleResolutionDownBy || null;
    }
    result[id] = pair;
  }
  return result;
}
"""


def pairs(participant: Participant) -> dict:
    return participant.page.evaluate(PAIRS_JS)


def own_id(participant: Participant) -> str:
    return participant.page.evaluate("() => window.redconnect.id")


def wait_pairs_decoding(participant: Participant, count: int, frames_above: dict | int) -> dict:
    """Until `count` pairs are connected and each decodes more video than `frames_above`.

    Polled from Python: page.wait_for_function does not await an async predicate (the
    returned Promise counts as truthy at once), and getStats is async.
    """
    deadline = time.monotonic() + 30
    while True:
        seen = pairs(participant)
        if len(seen) == count and all(
            pair["connection"] == "connected"
            and pair["framesDecoded"]
            > (frames_above if isinstance(frames_above, int) else frames_above.get(peer, 0))
            for peer, pair in seen.items()
        ):
            return seen
        assert time.monotonic() < deadline, f"pairs not decoding in time: {seen}"
        participant.page.wait_for_timeout(250)


def wait_pairs(participant: Participant, predicate, what: str) -> dict:
    """Until predicate(pairs) holds (polled, see wait_pairs_decoding)."""
    deadline = time.monotonic() + 30
    while True:
        seen = pairs(participant)
        if predicate(seen):
            return seen
        assert time.monotonic() < deadline, f"{what}: {seen}"
        participant.page.wait_for_timeout(250)


def admit_from_waiting_list(doctor: Participant, name: str) -> None:
    entry = doctor.page.locator("[data-waiting-entry]", has_text=name)
    entry.wait_for(state="visible")
    entry.locator('[data-action="admit"]').click()
    entry.wait_for(state="detached")


def tile_of(participant: Participant, other_id: str):
    return participant.page.locator(f'[data-tile][data-participant-id="{other_id}"]')


@pytest.fixture(scope="module")
def mesh(live_site, browser):
    """Doctor, patient and interpreter in one call; yields (doctor, patient, guest, budget)."""
    server, seed = live_site
    appointment = manage_json(
        server.env, "create_appointment", "--doctor", "demo-arzt", "--guests", "1"
    )
    assert len(appointment["guest_codes"]) == 1
    patient = open_participant(browser, server.url)
    guest = open_participant(browser, server.url)
    doctor = open_participant(browser, server.url)

    for person, code, name in (
        (patient, appointment["patient_code"], PATIENT_NAME),
        (guest, appointment["guest_codes"][0], GUEST_NAME),
    ):
        join_waiting(person, code, name)
    join_as_doctor(doctor, seed["doctor"]["username"], appointment["doctor_code"])

    # Both wait in the doctor's list, each with a role label, and are let in one by one.
    doctor.page.locator("[data-waiting-entry]").nth(1).wait_for(state="visible")
    waiting_text = doctor.page.text_content('[data-role="waiting-list"]')
    assert PATIENT_NAME in waiting_text and GUEST_NAME in waiting_text
    assert "Patientin/Patient" in waiting_text and "Begleitperson" in waiting_text
    # Before admission the guest holds no connection and hears nothing of anybody.
    assert guest.page.evaluate("() => Object.keys(window.redconnect.peers).length") == 0
    admit_from_waiting_list(doctor, PATIENT_NAME)
    admit_from_waiting_list(doctor, GUEST_NAME)
    budget = doctor.page.evaluate(
        "async () => (await import('/static/js/bandwidth.js')).budgetFor(3)"
    )
    yield doctor, patient, guest, budget
    for person in (doctor, patient, guest):
        person.page.context.close()


def test_everyone_decodes_both_others_over_direct_pairs(mesh):
    doctor, patient, guest, _budget = mesh
    ids = {p: own_id(p) for p in (doctor, patient, guest)}
    assert len(set(ids.values())) == 3 and all(len(i) >= 8 for i in ids.values())
    for person in (doctor, patient, guest):
        wait_pairs_decoding(person, 2, 10)
        seen = pairs(person)
        others = {ids[p] for p in (doctor, patient, guest) if p is not person}
        assert set(seen) == others  # one connection per pair, keyed by the other's id
        for pair in seen.values():
            assert pair["dtls"] == "connected", pair
            # Directly between the two browsers, no relay (KBV § 5 Nr. 5). The remote side
            # may show as peer-reflexive: its check arrived before its trickled candidate.
            assert pair["local"] == "host" and pair["remote"] in ("host", "prflx"), pair
        assert person.page.get_attribute('[data-role="tiles"]', "data-count") == "3"


def test_each_pair_shows_one_matching_safety_code_on_the_tiles(mesh):
    doctor, patient, guest, _budget = mesh
    ids = {p: own_id(p) for p in (doctor, patient, guest)}
    codes = {}
    for person in (doctor, patient, guest):
        for other in (doctor, patient, guest):
            if other is person:
                continue
            tile = tile_of(person, ids[other])
            tile.locator('[data-role="safety-code"]').filter(
                has_text=re.compile(r"^\d{4} \d{4}$")
            ).wait_for()
            codes[(person, other)] = tile.get_attribute("data-safety-code")
    for a, b in ((doctor, patient), (doctor, guest), (patient, guest)):
        assert codes[(a, b)] == codes[(b, a)]
        # The other side's certificate is the one this side sees: nobody in between.
        assert pairs(a)[ids[b]]["remoteFingerprint"] == pairs(b)[ids[a]]["localFingerprint"]
    assert len({codes[(doctor, patient)], codes[(doctor, guest)], codes[(patient, guest)]}) == 3


def test_tiles_show_names_and_role_labels(mesh):
    doctor, patient, guest, _budget = mesh
    ids = {p: own_id(p) for p in (doctor, patient, guest)}
    doctor_name = doctor.page.get_attribute("[data-call]", "data-display-name")
    expected = {
        doctor: (doctor_name, "Ärztin/Arzt"),
        patient: (PATIENT_NAME, "Patientin/Patient"),
        guest: (GUEST_NAME, "Begleitperson"),
    }
    for person in (doctor, patient, guest):
        for other, (name, label) in expected.items():
            if other is person:
                continue
            tile = tile_of(person, ids[other])
            assert tile.locator('[data-role="peer-name"]').text_content() == name
            assert tile.locator('[data-role="tile-role"]').text_content() == label
            assert tile.locator('[data-role="tile-route"]').text_content() == "direkt"
    # Only the doctor can send someone back to the waiting room.
    assert doctor.page.locator('[data-tile] [data-action="remove"]').count() == 2
    assert patient.page.locator('[data-action="remove"]').count() == 0


def test_chat_reaches_everyone_peer_to_peer(mesh):
    doctor, patient, guest, _budget = mesh
    doctor.page.fill('[data-role="chat-input"]', "Guten Tag in die Runde")
    doctor.page.locator('[data-role="chat-send"]').click()
    for person in (patient, guest):
        person.page.locator(
            '[data-role="chat-log"] [data-side="peer"]', has_text="Guten Tag in die Runde"
        ).wait_for()
    guest.page.fill('[data-role="chat-input"]', "Ich übersetze.")
    guest.page.press('[data-role="chat-input"]', "Enter")  # the form submits on Enter too
    for person in (doctor, patient):
        message = person.page.locator(
            '[data-role="chat-log"] [data-side="peer"]', has_text="Ich übersetze."
        )
        message.wait_for()
        assert GUEST_NAME in message.text_content()  # the author is named


def test_three_people_share_the_uplink_audio_first(mesh):
    doctor, patient, guest, budget = mesh
    assert budget is not None and budget["peers"] == 2
    cap = budget["videoKbps"] * 1000
    for person in (doctor, patient, guest):
        seen = wait_pairs(
            person,
            lambda seen, cap=cap: (
                len(seen) == 2 and all(p["maxBitrate"] == cap for p in seen.values())
            ),
            "video not shared out",
        )
        for pair in seen.values():
            assert pair["scale"] == budget["scaleResolutionDownBy"]


def test_mute_shows_on_the_tile_for_everyone(mesh):
    doctor, patient, guest, _budget = mesh
    patient_id = own_id(patient)
    patient.page.locator('[data-action="mute"]').click()
    for person in (doctor, guest):
        tile_of(person, patient_id).locator('[data-role="tile-muted"]').wait_for(state="visible")
    patient.page.locator('[data-action="mute"]').click()
    for person in (doctor, guest):
        tile_of(person, patient_id).locator('[data-role="tile-muted"]').wait_for(state="hidden")


def test_guest_sent_back_to_waiting_room_and_the_others_keep_talking(mesh):
    doctor, patient, guest, _budget = mesh
    ids = {p: own_id(p) for p in (doctor, patient, guest)}
    before = {p: {i: v["framesDecoded"] for i, v in pairs(p).items()} for p in (doctor, patient)}

    tile_of(doctor, ids[guest]).locator('[data-action="remove"]').click()

    # The guest is back in the waiting room with no connection left: nothing of the call.
    guest.page.locator('[data-view="waiting"]').wait_for(state="visible")
    guest.page.wait_for_function("() => Object.keys(window.redconnect.peers).length === 0")
    assert guest.page.locator("[data-tile]").count() == 0
    # The doctor sees the guest waiting again; the patient's tile of the guest is gone.
    doctor.page.locator("[data-waiting-entry]", has_text=GUEST_NAME).wait_for(state="visible")
    tile_of(patient, ids[guest]).wait_for(state="detached")
    tile_of(doctor, ids[guest]).wait_for(state="detached")

    # Doctor and patient still decode each other's video, uncapped again (two people).
    for person in (doctor, patient):
        other = ids[patient] if person is doctor else ids[doctor]
        wait_pairs_decoding(person, 1, {other: before[person][other] + 30})
        wait_pairs(
            person,
            lambda seen: all(p["maxBitrate"] is None for p in seen.values()),
            "still capped with two people",
        )
        assert person.page.get_attribute('[data-role="tiles"]', "data-count") == "2"
        assert person.state("connection-state") == "connected"


def test_no_script_errors_or_csp_violations(mesh):
    for person in mesh[:3]:
        assert person.problems == []


def test_tile_grid_of_nine_fits_a_360px_phone(live_site, browser):
    """The grid of nine tiles (cloned from the page's own template) on a 360 px screen."""
    server, _seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    context = browser.new_context(
        base_url=server.url, viewport={"width": 360, "height": 740}, locale="de-DE"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        fill_join_form(page, appointment["patient_code"], PATIENT_NAME)
        page.evaluate(
            """() => {
              const root = document.querySelector('[data-call]');
              for (const view of root.querySelectorAll('[data-view]'))
                view.hidden = view.dataset.view !== 'call';
              const grid = root.querySelector('[data-role="tiles"]');
              const template = root.querySelector('[data-role="tile-template"]');
              for (let i = 0; i < 8; i++) {
                const tile = template.content.firstElementChild.cloneNode(true);
                tile.querySelector('[data-role="peer-name"]').textContent =
                  'Teilnehmerin mit einem recht langen Namen ' + i;
                tile.querySelector('[data-role="tile-role"]').textContent = 'Begleitperson';
                tile.querySelector('[data-role="safety-code"]').textContent = '1234 5678';
                grid.prepend(tile);
              }
              grid.dataset.count = '9';
            }"""
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        boxes = page.evaluate(
            "() => [...document.querySelectorAll('[data-tile], .tile--self')].map((t) => {"
            " const r = t.getBoundingClientRect(); return [r.left, r.right, r.width]; })"
        )
        assert len(boxes) == 9
        assert all(left >= 0 and right <= 360 for left, right, _width in boxes)
        assert {round(width) for *_edges, width in boxes} == {round(boxes[0][2])}  # 2 columns
        assert boxes[0][2] < 180
        codes = page.locator('[data-role="safety-code"]')
        assert all(
            codes.nth(i).evaluate("(e) => e.scrollWidth <= e.clientWidth + 1") for i in range(8)
        )
    finally:
        context.close()
