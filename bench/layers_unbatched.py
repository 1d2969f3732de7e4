"""A/B run: `LocalFirstRedisChannelLayer` as it was before its sends were batched.

Every cross-process send is its own Lua round trip, started at once (several in flight
on the connection pool), and the pump reads with ZPOPMIN + BZPOPMIN (two round trips
when the queue runs empty) instead of BZMPOP. Everything else (in-process delivery,
capacities, encryption) is the production layer. Used by bench/settings_unbatched.py.
"""

from signaling.layers import LocalFirstRedisChannelLayer


class UnbatchedLocalFirstRedisChannelLayer(LocalFirstRedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._bzmpop = False

    async def _put(self, index: int, entries: list[tuple]) -> list[bool]:
        return await self._write(index, [(*entry, self._score(), None) for entry in entries])
