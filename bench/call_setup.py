"""Call set-up in real Chromium: from "both joined" to the first decoded remote video frame.

Per call, a doctor and a patient (separate browser contexts, fake camera and microphone
as in the e2e tests) submit the join form, pass the device check and enter the call page;
the patient waits, the doctor clicks "Let in". Measured on the pages' own clocks
(`performance.timeOrigin + performance.now()`, the same system clock for both pages):
from the doctor's click on "Let in" — the moment both participants have joined — to the
first remote video frame presented (`requestVideoFrameCallback`) on each side; the call
is set up when both sides show video. Calls run one after another.

Chromium gathers ICE candidates on every interface, so the script runs itself inside a
loopback-only network namespace (`unshare`) unless it already is in one.

    .venv/bin/python bench/call_setup.py           # 10 calls
    .venv/bin/python bench/call_setup.py --quick   # smoke: 2 calls
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

from _common import (
    Deployment,
    common_arguments,
    fmt,
    loadavg,
    machine_info,
    percentile,
    print_table,
    write_results,
)
from browser import CHROMIUM, CHROMIUM_ARGS  # tests/support/, on sys.path via _common

VERBOSE = "--verbose" in sys.argv

# Resolves with the epoch-ms time of the first remote video frame presented.
FIRST_FRAME_JS = """() => new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error("no remote video frame within 30 s")), 30000);
  const done = () => resolve(performance.timeOrigin + performance.now());
  // The other person's tile (and its video) is created when the connection starts.
  const start = () => {
    const video = document.querySelector('[data-role="remote-video"]');
    if (!video) { setTimeout(start, 5); return; }
    if (video.requestVideoFrameCallback) { video.requestVideoFrameCallback(done); return; }
    const poll = () => (video.videoWidth > 0 ? done() : setTimeout(poll, 5));
    poll();
  };
  start();
})"""
# Records the epoch-ms time of a click on a button (data-action) in window.__bench[action].
CLICK_CLOCK_JS = """(action) => {
  window.__bench = window.__bench || {};
  document.querySelector(`[data-action="${action}"]`).addEventListener('click', () => {
    window.__bench[action] = performance.timeOrigin + performance.now();
  }, { capture: true, once: true });
}"""


def only_loopback() -> bool:
    # Asked of the kernel for this process's namespace (/sys/class/net may show another).
    return [name for _index, name in socket.if_nameindex()] == ["lo"]


def reexec_in_loopback_namespace() -> None:
    """Run this script again inside a new network namespace that has only `lo`."""
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("unshare is missing: cannot confine Chromium's ICE gathering to loopback")
    flags = "-n" if os.geteuid() == 0 else "-rn"
    if os.environ.get("REDCONNECT_BENCH_NETNS"):
        sys.exit("still not confined to loopback inside the new namespace")
    os.environ["REDCONNECT_BENCH_NETNS"] = "1"
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    os.execv(unshare, [unshare, flags, "sh", "-c", f"ip link set lo up && exec {command}"])  # noqa: S606


def join(page, base: str, code: str, name: str = "") -> None:
    page.goto(base + "/")
    page.fill("input[name=code]", code)
    if name:
        page.fill("input[name=name]", name)
        page.check("input[name=consent]")
    with page.expect_navigation():
        page.click("form.join-form [type=submit]")
    if not page.url.endswith("/call/"):
        raise RuntimeError(f"join did not reach the call page: {page.url}")


def log(message: str) -> None:
    if VERBOSE:
        print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def enter_call(page) -> None:
    page.click('[data-action="join"]:enabled', timeout=30_000)


def one_call(browser, deployment: Deployment, call: dict, index: int) -> dict:
    base = f"http://127.0.0.1:{deployment.port}"
    doctor_ctx = browser.new_context(locale="de-DE")
    doctor_ctx.add_cookies(
        [{"name": k, "value": v, "url": base} for k, v in call["doctor_cookies"].items()]
    )
    patient_ctx = browser.new_context(locale="de-DE")
    try:
        doctor, patient = doctor_ctx.new_page(), patient_ctx.new_page()
        join(patient, base, call["patient_code"], f"Patientin {index}")
        join(doctor, base, call["doctor_code"])
        log("both joined")
        enter_call(patient)
        patient.wait_for_selector('[data-view="waiting"]', state="visible", timeout=30_000)
        doctor.evaluate(CLICK_CLOCK_JS, "join")
        enter_call(doctor)
        log("both entered the call page")
        doctor.wait_for_selector('[data-action="admit"]', state="visible", timeout=30_000)
        log("doctor sees the waiting patient")
        doctor.evaluate(CLICK_CLOCK_JS, "admit")
        for page in (doctor, patient):  # start listening, without waiting for the frame
            page.evaluate(f"() => {{ window.__benchFrame = ({FIRST_FRAME_JS})(); }}")
        doctor.click('[data-action="admit"]')
        log("admitted")
        doctor_at = doctor.evaluate("() => window.__benchFrame")
        patient_at = patient.evaluate("() => window.__benchFrame")
        clicks = doctor.evaluate("() => window.__bench")
        admit_at, entered_at = clicks["admit"], clicks["join"]
        return {
            "doctor_first_frame_ms": round(doctor_at - admit_at, 1),
            "patient_first_frame_ms": round(patient_at - admit_at, 1),
            "setup_ms": round(max(doctor_at, patient_at) - admit_at, 1),
            "doctor_entered_to_video_ms": round(max(doctor_at, patient_at) - entered_at, 1),
        }
    finally:
        doctor_ctx.close()
        patient_ctx.close()


def summary(values: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(values), 1) if values else None,
        "p90_ms": percentile(values, 0.90),
        "min_ms": min(values) if values else None,
        "max_ms": max(values) if values else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: 2 calls")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--verbose", action="store_true", help="print each step")
    args = parser.parse_args()
    if args.quick:
        args.calls = 2
    if not only_loopback():
        reexec_in_loopback_namespace()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    deployment = Deployment()
    deployment.prepare()
    calls = deployment.provision(args.calls)
    deployment.start()
    results, errors = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                for index, call in enumerate(calls):
                    started = time.perf_counter()
                    try:
                        result = one_call(browser, deployment, call, index)
                    except Exception as exc:  # one failed call must not hide the others
                        errors.append(f"call {index}: {type(exc).__name__}: {str(exc)[:200]}")
                        continue
                    result["wall_s_including_joins"] = round(time.perf_counter() - started, 2)
                    results.append(result)
                    print(f"call {index}: {result['setup_ms']} ms", flush=True)
            finally:
                browser.close()
    finally:
        server_errors = deployment.server_errors()
        deployment.stop()
    data = {
        "benchmark": "call_setup",
        "machine": machine_info(),
        "config": {"calls": args.calls, "quick": args.quick, "chromium_args": CHROMIUM_ARGS},
        "calls": results,
        "setup": summary([r["setup_ms"] for r in results]),
        "doctor_first_frame": summary([r["doctor_first_frame_ms"] for r in results]),
        "patient_first_frame": summary([r["patient_first_frame_ms"] for r in results]),
        "doctor_entered_to_video": summary([r["doctor_entered_to_video_ms"] for r in results]),
        "errors": errors,
        "server_log_errors": server_errors[:20],
    }
    data["machine"]["loadavg_at_end"] = loadavg()
    rows = [
        (label, *(fmt(data[key][f]) for f in ("median_ms", "p90_ms", "min_ms", "max_ms")))
        for label, key in [
            ("both sides show video", "setup"),
            ("doctor sees patient", "doctor_first_frame"),
            ("patient sees doctor", "patient_first_frame"),
            ("doctor enters → video (incl. admit)", "doctor_entered_to_video"),
        ]
    ]
    print_table(
        f"call set-up: 'Let in' → first remote frame ({len(results)} of {args.calls} calls)",
        rows,
        ("figure", "median ms", "p90 ms", "min ms", "max ms"),
    )
    for error in errors:
        print("  ", error)
    write_results("call_setup-quick" if args.quick else "call_setup", data, args.json_path)
    return 0 if results and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
