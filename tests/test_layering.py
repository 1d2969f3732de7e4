"""consultations does not depend on signaling: it announces cancellations and re-issues
with Django signals, and signaling listens (the live-socket closes themselves are proven
end to end in tests/test_signaling.py, test_signaling_mesh.py and test_api.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

from consultations import services, signals
from signaling import presence

CONSULTATIONS = Path(settings.BASE_DIR) / "consultations"


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in the file names, function-level ones included."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_consultations_imports_nothing_from_signaling():
    offenders = {
        str(path.relative_to(CONSULTATIONS)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "signaling"
        )
        for path in CONSULTATIONS.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
    # ... nor names it in a dynamic import (importlib, __import__).
    for path in CONSULTATIONS.rglob("*.py"):
        assert "signaling." not in path.read_text(encoding="utf-8"), path


def test_the_import_scan_sees_a_function_level_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from signaling import presence\n")
    assert imported_modules(sample) == {"signaling"}


def test_signaling_listens_to_the_consultations_signals():
    assert presence.on_appointment_closed in [
        entry[1]() for entry in signals.appointment_closed.receivers
    ]
    assert presence.on_codes_reissued in [entry[1]() for entry in signals.codes_reissued.receivers]


def test_cancel_and_reissue_send_the_signals(issued):
    heard = []

    def listen(signal_name):
        def receiver(sender, **kwargs):
            heard.append((signal_name, kwargs["appointment_id"], kwargs.get("codes_version")))

        return receiver

    closed, reissued = listen("closed"), listen("reissued")
    signals.appointment_closed.connect(closed, weak=False)
    signals.codes_reissued.connect(reissued, weak=False)
    try:
        appointment = issued.appointment
        services.reissue_codes(appointment)
        version = appointment.codes_version
        assert services.cancel_appointment(appointment)
        assert not services.cancel_appointment(appointment)  # already cancelled: silent
    finally:
        signals.appointment_closed.disconnect(closed)
        signals.codes_reissued.disconnect(reissued)
    assert heard == [("reissued", appointment.pk, version), ("closed", appointment.pk, None)]
