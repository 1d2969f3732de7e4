"""A/B runs: `LocalFirstRedisChannelLayer` as it was before its sends were batched.

`UnbatchedLocalFirstRedisChannelLayer` is the layer before this change: every
cross-process send is its own Lua round trip, started at once (several in flight on the
connection pool), the pump reads with ZPOPMIN + BZPOPMIN (two round trips when the
queue runs empty) instead of BZMPOP, and messages are Fernet tokens (channels_redis'
serializer). `FernetLocalFirstRedisChannelLayer` is today's layer with Fernet instead
of AES-GCM, to tell the two changes apart. Everything else (in-process delivery,
capacities) is the production layer. Used by bench/settings_unbatched.py and
bench/settings_fernet.py.
"""

from signaling.layers import AeadSerializer, LocalFirstRedisChannelLayer


class FernetLocalFirstRedisChannelLayer(LocalFirstRedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self._serializer, AeadSerializer):
            self._serializer = self._serializer.fallback  # channels_redis' Fernet


class UnbatchedLocalFirstRedisChannelLayer(FernetLocalFirstRedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._bzmpop = False

    async def _put(self, index: int, entries: list[tuple]) -> list[bool]:
        return await self._write(index, [(*entry, self._score(), None) for entry in entries])
