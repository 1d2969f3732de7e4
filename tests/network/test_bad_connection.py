"""A bad home connection for real (KBV § 5 Nr. 7): limited rate and packet loss.

This kernel has no netem; the home router limits its link both ways with `tc tbf`
(400 kbit/s) and drops 10 % of the forwarded packets with nftables (`numgen random`).
The call must keep its audio, send less video at a lower resolution (WebRTC's own
congestion control; nothing in the page caps a bitrate), show the bad quality and offer
audio only; once the impairment is lifted, quality recovers within 30 seconds.
docs/evidence-network.md describes the measurement for the compliance record.
"""

from __future__ import annotations

import time

import pytest

from tests.network.calls import PC_JS, close_call, decodes_video_both_ways, open_call, stats

pytestmark = pytest.mark.network

RATE_KBIT, LOSS_PERCENT = 400, 10
RECOVERY_SECONDS = 30
CLEAN_KBIT = 500  # video the clean link carries before the impairment starts

# Both fake cameras send HD, as a laptop camera does (Chromium's fake device defaults to
# 640×480, which 400 kbit/s would not force down in resolution).
HD_JS = f"""() => Promise.all({PC_JS}.getSenders()
  .filter((s) => s.track && s.track.kind === "video")
  .map((s) => s.track.applyConstraints({{width: 1280, height: 720, frameRate: 30}})))"""

INDICATOR_JS = """() => ({
  level: document.querySelector('[data-role="quality"]').dataset.level,
  hint: !document.querySelector('[data-role="quality-hint"]').hidden,
  details: document.querySelector('[data-role="quality-details"]').textContent})"""


def window(participant, seconds: float = 4.0) -> dict:
    """Bitrates (kbit/s), audio packets and resolutions of one participant over a window."""
    before = stats(participant)
    time.sleep(seconds)
    after = stats(participant)

    def kbps(field: str) -> float:
        return (after[field] - before[field]) * 8 / 1000 / seconds

    return {
        "video_out_kbps": round(kbps("videoBytesOut")),
        "audio_in_packets_per_s": round(
            (after["audioPacketsIn"] - before["audioPacketsIn"]) / seconds
        ),
        "audio_in_kbps": round(kbps("audioBytesIn")),
        "send_pixels": after["sendWidth"] * after["sendHeight"],
        "send": f"{after['sendWidth']}x{after['sendHeight']}",
        "limitation": after["limitation"],
    }


def test_bad_home_connection_degrades_gracefully_and_recovers(fresh_nat, browsers):
    lab = fresh_nat
    doctor, patient = open_call(lab, browsers)
    evidence: list[str] = []
    try:
        for participant in (doctor, patient):
            participant.page.evaluate(HD_JS)
        decodes_video_both_ways(doctor, patient)
        # Let congestion control ramp up on the clean link first: more video than the
        # impaired link could carry.
        deadline = time.monotonic() + 45

        def settled() -> bool:
            level = patient.page.evaluate(INDICATOR_JS)["level"]
            return clean["video_out_kbps"] >= CLEAN_KBIT and level == "good"

        clean = window(patient, 3)
        while not settled() and time.monotonic() < deadline:
            clean = window(patient, 3)
        evidence.append(f"clean: patient {clean}, indicator {patient.page.evaluate(INDICATOR_JS)}")
        assert settled(), clean

        lab.impair_home(RATE_KBIT, LOSS_PERCENT)
        # The audio-only switch is offered (two poor samples in a row) ...
        patient.page.wait_for_function(
            "() => !document.querySelector('[data-role=\"quality-hint\"]').hidden",
            timeout=40_000,
        )
        evidence.append(f"bad: indicator {patient.page.evaluate(INDICATOR_JS)}")
        offer = patient.page.locator('[data-role="quality-hint"] [data-action="audio-only"]')
        assert offer.is_visible()
        # ... while the call goes on, with less video at a lower resolution.
        bad = window(patient, 6)
        # The encoder lowers the bitrate at once, the resolution only when its quality
        # scaler has seen enough (seen once in a fresh-machine run: 6 s were not enough).
        downscale_deadline = time.monotonic() + 30
        while bad["send_pixels"] >= clean["send_pixels"] and time.monotonic() < downscale_deadline:
            bad = window(patient, 3)
        doctor_bad = window(doctor, 4)
        evidence.append(f"bad: patient {bad}, doctor {doctor_bad}")
        assert bad["video_out_kbps"] < RATE_KBIT < clean["video_out_kbps"], bad
        assert bad["send_pixels"] < clean["send_pixels"], (clean, bad)
        for sample in (bad, doctor_bad):
            # Opus sends 50 packets/s; most arrive despite the loss: audio is kept.
            assert sample["audio_in_packets_per_s"] > 30, sample
        for participant in (doctor, patient):
            assert participant.page.evaluate(INDICATOR_JS)["level"] in ("fair", "poor")
            assert participant.stats()["ice"] in ("connected", "completed")

        lab.lift_impairment()
        lifted = time.monotonic()
        patient.page.wait_for_function(
            "() => document.querySelector('[data-role=\"quality\"]').dataset.level === 'good'"
            " && document.querySelector('[data-role=\"quality-hint\"]').hidden",
            timeout=RECOVERY_SECONDS * 1000,
        )
        doctor.page.wait_for_function(
            "() => document.querySelector('[data-role=\"quality\"]').dataset.level === 'good'",
            timeout=RECOVERY_SECONDS * 1000,
        )
        deadline = lifted + RECOVERY_SECONDS
        recovered = window(patient, 3)
        target = 2 * bad["video_out_kbps"]
        while recovered["video_out_kbps"] < target and time.monotonic() < deadline:
            recovered = window(patient, 3)
        evidence.append(
            f"lifted: after {time.monotonic() - lifted:.0f} s patient {recovered}, "
            f"indicator {patient.page.evaluate(INDICATOR_JS)}"
        )
        assert recovered["video_out_kbps"] >= target, recovered
    finally:
        print("\n".join(evidence))
        close_call(doctor, patient)
