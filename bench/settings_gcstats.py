"""Diagnostic run: the project's settings, plus a record of the garbage collector's pauses.

    GCSTATS_FILE=/tmp/gc.json .venv/bin/python bench/signaling.py --only project \
        --settings bench.settings_gcstats

When the server exits, $GCSTATS_FILE holds `[generation, pause ms, epoch seconds]` for
every collection; compare the times with the set-up and steady phases. With
GARBAGE_AT=SECONDS the server also keeps what the collector frees during the two seconds
after that moment and writes its object types to $GARBAGE_FILE: where cyclic garbage
comes from (a page request leaves about a hundred objects in reference cycles). With
GC_YOUNG_THRESHOLD=N the server's young generation is collected after N objects instead
of `redconnect.serving.GC_YOUNG_THRESHOLD`.
"""

import atexit
import collections
import gc
import json
import os
import signal
import sys
import threading
import time

from redconnect.settings import *  # noqa: F403

_pauses: list[tuple[int, float, float]] = []
_started = [0.0]


def _record(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    pause_ms = (time.perf_counter() - _started[0]) * 1000
    _pauses.append((info["generation"], round(pause_ms, 3), round(time.time(), 3)))


def _dump(*_) -> None:
    with open(os.environ.get("GCSTATS_FILE", "/tmp/gcstats.json"), "w") as f:
        json.dump(_pauses, f)
    sys.exit(0)


def _census(at: float) -> None:
    time.sleep(at)
    gc.set_debug(gc.DEBUG_SAVEALL)
    time.sleep(2)
    gc.collect()
    counts = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    with open(os.environ.get("GARBAGE_FILE", "/tmp/garbage.json"), "w") as f:
        json.dump({"at": time.time(), "types": counts.most_common(60)}, f, indent=1)


gc.callbacks.append(_record)
atexit.register(_dump)
signal.signal(signal.SIGTERM, _dump)
if os.environ.get("GARBAGE_AT"):
    threading.Thread(target=_census, args=(float(os.environ["GARBAGE_AT"]),), daemon=True).start()
if os.environ.get("GC_YOUNG_THRESHOLD"):
    # A/B of `serve`'s young-generation threshold (redconnect.serving.tune_gc reads it).
    from redconnect import serving

    serving.GC_YOUNG_THRESHOLD = int(os.environ["GC_YOUNG_THRESHOLD"])
