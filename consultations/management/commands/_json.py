"""Shared output helper for commands with a `--json` switch."""

from __future__ import annotations

import json


def emit(command, payload: dict, as_json: bool, human: str) -> None:
    if as_json:
        command.stdout.write(json.dumps(payload, ensure_ascii=False))
    else:
        command.stdout.write(human)
