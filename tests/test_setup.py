"""The fresh-machine set-up: `make` installs every Debian package the project needs.

The install step once silently did nothing (a pattern rule behind `.PHONY`), hidden by a
development machine that had the packages already. These tests run the real Makefile
targets with a `dpkg-query` that reports every package missing and an `apt-get` that
records its arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deployment import PROFILE_SKIP, require_tool

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_LIST = ROOT / "scripts" / "debian-packages.txt"


def listed(profile: str) -> list[str]:
    packages = []
    for line in PACKAGE_LIST.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        package, *words = line.split()
        profiles = []
        for word in words:
            if word not in ("run", "test"):
                break
            profiles.append(word)
        assert profiles, f"{package}: no profile in scripts/debian-packages.txt"
        if profile in profiles:
            packages.append(package)
    return packages


def fake_tools(tmp_path: Path, installed: str) -> dict[str, str]:
    """A PATH whose dpkg-query reports `installed` for every package and whose apt-get logs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt-get.log"
    scripts = {
        "dpkg-query": f"#!/bin/sh\nprintf '%s' '{installed}'\n",
        "apt-get": f'#!/bin/sh\necho "$@" >> {log}\n',
        "sudo": '#!/bin/sh\nexec "$@"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("make"), "-s", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.parametrize("profile", ["run", "test"])
def test_make_installs_every_listed_package_when_all_are_missing(tmp_path, profile):
    make(f"system-{profile}", fake_tools(tmp_path, installed="unknown ok not-installed"))
    calls = (tmp_path / "apt-get.log").read_text().splitlines()
    assert calls[0].split()[0] == "update"
    install = calls[1].split()
    assert install[:2] == ["install", "-y"]
    requested = [word for word in install if not word.startswith("-")][1:]
    assert requested == listed(profile)


def test_make_installs_nothing_when_everything_is_there(tmp_path):
    make("system-test", fake_tools(tmp_path, installed="install ok installed"))
    assert not (tmp_path / "apt-get.log").exists()


def test_the_lists_hold_what_the_suite_and_the_server_need():
    run, test = set(listed("run")), set(listed("test"))
    assert {"python3-venv", "gettext", "libpango-1.0-0", "fonts-dejavu-core"} <= run
    assert run <= test, "make test also serves pages and renders the PDF"
    assert {
        "redis-server",
        "postgresql",
        "chromium",
        "iproute2",
        "nodejs",
        "npm",
        "openssl",
        "poppler-utils",
        "coturn",
        "nftables",
        "nginx-light",
    } <= test


def test_only_profile_skips_are_allowed(tmp_path):
    """A test that skips itself (e.g. a missing tool) fails the run; a profile skip does not."""
    # inside tests/, so that tests/conftest.py applies as in the real suite
    probe = ROOT / "tests" / f"test_zz_skip_probe_{os.getpid()}.py"
    probe.write_text(
        "import pytest\n"
        f"def test_profile():\n    pytest.skip({PROFILE_SKIP + 'covered elsewhere'!r})\n"
        "def test_tool():\n    pytest.skip('no such tool')\n"
    )
    report = tmp_path / "run.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", str(probe)],
            cwd=ROOT,
            env={**os.environ, "RC_RUN_REPORT": str(report)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "skipped for a reason other than the profile" in result.stdout
    assert "no such tool" in report.read_text()


def test_a_second_make_run_reinstalls_nothing():
    """After the first run (make test has just done it), only the cheap checks run again."""
    plan = subprocess.run(
        [require_tool("make"), "-n", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "install-debian-packages.sh run" in plan  # checks dpkg, installs only what is missing
    for reinstall in ("pip install", "python3 -m venv", "npm ci", "apt-get"):
        assert reinstall not in plan
    # the demo data stays: migrate and the idempotent seed_demo, never a flush
    assert "migrate" in plan and "seed_demo" in plan
    assert "flush" not in plan and "rm " not in plan
