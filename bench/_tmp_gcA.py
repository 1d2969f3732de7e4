import gc
from redconnect.settings import *  # noqa
gc.set_threshold(50_000, 20, 20)
