import gc, time, os
from redconnect.settings import *  # noqa
_t = {}
_tot = [0.0, 0.0, 0.0]
_n = [0, 0, 0]
def _cb(phase, info):
    g = info["generation"]
    if phase == "start":
        _t[g] = time.process_time()
    else:
        _tot[g] += time.process_time() - _t.get(g, time.process_time()); _n[g] += 1
        if g == 2 or _n[g] % 200 == 0:
            with open(f"/tmp/gcexp/gc-{os.getpid()}.txt", "w") as f:
                f.write(f"{_n} {_tot} {gc.get_count()} objs={len(gc.get_objects()) if g==2 else ''}\n")
gc.callbacks.append(_cb)
