"""Channel layers: the embedded default's in-memory layer, and the Redis layer of production.

`ThrottledInMemoryChannelLayer` (embedded default). Channels' `InMemoryChannelLayer` runs
`_clean_expired()` — a walk over every channel queue and every group member of the
process — at each `receive()` and `group_send()`. Every consumer waits in `receive()`, so
each relayed frame costs O(connections): with 500 calls (1,000 sockets) that walk was a
quarter of the server's CPU and capped the relay at under 200 frames/s (bench/README.md,
"Performance"). Expiry is a safety net for messages nobody reads (default 60 s); running
it at most once a second keeps that net and makes the cost per frame independent of the
number of connections.

`LocalFirstRedisChannelLayer` (production, `REDIS_URL` set). channels_redis'
`RedisChannelLayer` lost messages under load (issue 14: 10,846 of 15,000 at 1,000 msg/s,
p50 4 s) because of how a process *reads* its Redis queue: every consumer of the process
waits in `receive()` for one shared lock, and the holder fetches a single message with
four sequential Redis round trips (EVAL cleanup, BZPOPMIN, ZADD backup, ZPOPMIN backup).
One process thus receives a few hundred messages per second whatever the offered load;
the process queue fills to its capacity and every further send raises `ChannelFull`,
which the consumer turns into a dropped event. A bigger capacity only delays that.

This subclass keeps everything that made `RedisChannelLayer` the choice (docs/
architecture.md, "Channel layer": bounded queues with `ChannelFull`, messages kept up
to `expiry`, expiring group membership, `symmetric_encryption_keys`) and changes the
delivery path:

1. **In-process first.** A process-local channel name carries the client prefix of the
   layer instance that created it (`specific.<prefix>!<id>`), i.e. of the process whose
   consumer reads it. `send()` to a channel of this instance puts the message straight
   into that channel's local mailbox (bounded by `capacity`; full → `ChannelFull`, as
   before); `group_send()` reads the group's members from Redis as before (members live
   in any process) and delivers to its own members the same way. Such messages are
   never serialised and never touch Redis — nothing of them exists outside the
   process's memory.
2. **Redis as the cross-process fallback, one round trip per event-loop pass.** A
   channel of another process is sent to through Redis with `RedisChannelLayer`'s keys,
   capacity check, encrypted per message (`AeadSerializer`), but the sends of one
   event-loop pass are not one command each: they wait in the process' outbox for their
   Redis host, and one writer task per host puts them all into Redis with one Lua call
   (`BATCH_SEND_SCRIPT`: per message drop expired, check capacity, add; per queue refresh
   the expiry). The script answers one flag per message, which resolves the future its
   sender awaits: a full queue raises `ChannelFull` in exactly that sender, the others
   of the batch are delivered. While a batch is in flight the next one collects, so
   under load the batches grow instead of the round trips multiplying (the mirror of the
   pump). One writer per host and strictly increasing scores keep the order of all of a
   process' sends to one queue.
3. **One reader per process.** Instead of consumers taking turns on a lock, one pump
   task per process pops its Redis queue in batches (`BZMPOP … MIN COUNT 256`: blocks
   while the queue is empty and takes everything there in one round trip; Redis < 7
   has no BZMPOP, there `ZPOPMIN key 256` and `BZPOPMIN`) and hands each message to
   the mailbox of its channel. Its in-flight backup queue is gone: it protected messages against a
   *consumer's* cancelled receive, and the pump is never cancelled while the process
   serves (a process that dies loses its queue's messages either way: their consumers
   died with it).

Order: a sender's messages to one channel always take the same route (decided by the
channel's name), so they arrive in the order sent. Messages from senders in different
processes have no common order (with `RedisChannelLayer` neither: they race to Redis);
the consumer tells a stale sender from its current peer by `from` and `since`.

A Redis failure in the pump (connection lost, Redis restarted) is raised in every
waiting `receive()` of the process — exactly as before, each consumer then closes its
WebSocket with 4503 and the page reconnects — and the next `receive()` starts a new pump.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import os
import struct
import time
import types
from collections import deque

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.utils import _close_redis, create_pool
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

logger = logging.getLogger("redconnect")

CLEAN_INTERVAL = 1.0  # seconds between two expiry walks
clock = time.monotonic  # replaceable in tests


class Inboxes:
    """Consumers' inboxes: a channel whose consumer reads one queue for everything.

    Channels' consumer waits on two receivers at once — the ASGI server's queue of client
    frames and the layer's channel — with `await_many_dispatch`, which creates a task and
    an `asyncio.wait` per message, and a layer message crosses the layer's own queue and
    its receive task on the way (with channels' in-memory layer also a `deepcopy`):
    about a quarter of the relay phase's py-spy samples; attaching took the relay from
    421 to 376 µs of CPU per message (bench/README.md, "Issue 14, inboxes"). A consumer
    that attaches its ASGI receive queue here (`signaling.consumers.CallConsumer`) gets
    the layer's messages for its channel put straight into that queue, beside its client
    frames: one await wakes it for either, in the order they arrived.

    The layer's rules stay: at most `capacity` messages wait (beyond, the sender gets
    `ChannelFull`, as with the layer's own queue), every receiver gets its own copy of the
    dict (shallow, like the Redis layer's local delivery: events are built per send and
    never changed by a receiver), and a send from another thread or event loop reaches
    the consumer's loop through `call_soon_threadsafe`. A layer failure (Redis gone) is
    put into the queue as the exception, which the consumer raises.
    """

    def _init_inboxes(self) -> None:
        self.inboxes: dict[str, tuple[asyncio.Queue, asyncio.AbstractEventLoop]] = {}

    def attach(self, channel: str, queue: asyncio.Queue) -> None:
        self.inboxes[channel] = (queue, asyncio.get_running_loop())

    def detach(self, channel: str) -> None:
        self.inboxes.pop(channel, None)

    def _into_inbox(self, channel: str, message: dict) -> bool | None:
        """Put `message` (the receiver's copy) into the channel's inbox: True if put,
        False if the inbox is full, None if the channel has no inbox."""
        found = self.inboxes.get(channel)
        if found is None:
            return None
        queue, loop = found
        if queue.qsize() >= self.capacity:  # per channel, as the Redis layer's mailboxes
            return False
        if asyncio.get_running_loop() is loop:
            queue.put_nowait(message)
        elif loop.is_closed():
            return False
        else:
            loop.call_soon_threadsafe(queue.put_nowait, message)
        return True


class ThrottledInMemoryChannelLayer(Inboxes, InMemoryChannelLayer):
    _next_clean = 0.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_inboxes()

    def _clean_expired(self) -> None:
        now = clock()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_INTERVAL
        super()._clean_expired()

    async def send(self, channel: str, message: dict) -> None:
        if channel in self.inboxes:
            assert isinstance(message, dict), "message is not a dict"
            if not self._into_inbox(channel, dict(message)):
                raise ChannelFull(channel)
            return
        await super().send(channel, message)

    async def group_send(self, group: str, message: dict) -> None:
        # Channels' group_send creates a task per member and awaits them; a send here
        # completes at once (a queue put), so one loop does the same work.
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass


# --- Production: Redis with in-process delivery ------------------------------------------

# redis-py's default pool raises MaxConnectionsError beyond 100 connections in flight:
# a burst of more than 100 consumers sending across processes at once (a trickle-ICE
# storm, a connect storm of group_adds) would lose events. A blocking pool makes the
# excess wait for a free connection instead, and bounds the process's connections.
POOL_SIZE = 64  # connections per process and Redis host
POOL_WAIT = 5.0  # seconds a command waits for a free connection before it fails
PUMP_BATCH = 256  # messages popped from the process queue per round trip
SEND_BATCH = 256  # messages written to Redis per round trip (the rest: the next one)
SCORE_STEP = 1e-6  # seconds between two scores of one process (> a double's ulp at 2e9)
PUMP_READ_MARGIN = 5.0  # seconds the pump's read waits beyond BZPOPMIN's own timeout
SWEEP_INTERVAL = 5.0  # seconds between two walks that drop expired mail and idle mailboxes

# All pending cross-process sends of one process to one Redis host, in one round trip.
# KEYS: the queue of each message, in send order (a queue may repeat); ARGV: the
# messages, then each one's capacity, then each one's score, then the oldest kept score
# and the expiry. Answers one character per message: "0" added, "1" the queue was full.
BATCH_SEND_SCRIPT = """
local n = #KEYS
local oldest, expiry = ARGV[3 * n + 1], ARGV[3 * n + 2]
local cleaned, added, flags = {}, {}, {}
for i = 1, n do
    local key = KEYS[i]
    if not cleaned[key] then
        redis.call('ZREMRANGEBYSCORE', key, 0, oldest)
        cleaned[key] = true
    end
    if redis.call('ZCARD', key) < tonumber(ARGV[n + i]) then
        redis.call('ZADD', key, ARGV[2 * n + i], ARGV[i])
        if not added[key] then
            added[key] = true
            added[#added + 1] = key
        end
        flags[i] = '0'
    else
        flags[i] = '1'
    end
end
for i = 1, #added do
    redis.call('EXPIRE', added[i], expiry)
end
return table.concat(flags)
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324  (Redis' script id)


class _Mailbox:
    """A local channel's undelivered messages and the receivers waiting for one."""

    __slots__ = ("messages", "waiters")

    def __init__(self) -> None:
        self.messages: deque[tuple[float, dict]] = deque()  # (expires at, message)
        self.waiters: deque[asyncio.Future] = deque()

    def idle(self) -> bool:
        return not self.messages and not self.waiters


# --- Encryption of messages in Redis ------------------------------------------------------

AEAD_MAGIC = b"RCg1"  # this layer's format, version 1 (Fernet tokens never start so)
AEAD_HEADER = struct.Struct(">4s16s12sd")  # magic, process salt, nonce, send time
FUTURE_SKEW = 60.0  # seconds a send time may lie ahead (clocks of other hosts), as Fernet


class AeadSerializer:
    """msgpack + AES-256-GCM for every message that goes through Redis.

    Why not channels_redis' Fernet (AES-128-CBC + HMAC-SHA256): with the sends batched,
    encryption was the largest cost of a cross-process message: 66 µs per message to
    encrypt and decrypt with Fernet, 8 µs with AES-GCM (one call into OpenSSL each way,
    no padding, no base64; the stored member is a third smaller). Same guarantees:
    confidential and authenticated with a key from `symmetric_encryption_keys` (the
    first encrypts, every one decrypts: rotation as MultiFernet), and a message older
    than `expiry` + 10 s is refused (Fernet's TTL check), so a replayed one is useless.

    Nonces never repeat: each process (each serializer, renewed after a fork) draws a
    random 128-bit salt, encrypts under HMAC-SHA256(key, salt) and numbers its messages;
    random 96-bit nonces under one shared key would make a collision ever likelier over
    billions of messages. Salt, number and send time are authenticated with the message
    (the header is the associated data). The salt and number also make every member
    unique in the sorted set, which RedisChannelLayer's random prefix was for.

    Fernet tokens (a process of the previous release, during a rolling restart) are
    still read by channels_redis' serializer (`fallback`).
    """

    def __init__(self, keys: list, expiry: float, fallback) -> None:
        self.keys = [
            hashlib.sha256(
                b"redconnect:layer-aead:" + (k.encode() if isinstance(k, str) else k)
            ).digest()
            for k in keys
        ]
        self.window = expiry + 10
        self.fallback = fallback
        self.openers: dict[bytes, list[AESGCM]] = {}  # salt of a process → its keys
        self._new_salt()

    def _new_salt(self) -> None:
        self.pid = os.getpid()
        self.salt = os.urandom(16)
        self.sealer = AESGCM(self._subkey(self.keys[0], self.salt))
        self.numbers = itertools.count(1)

    @staticmethod
    def _subkey(key: bytes, salt: bytes) -> bytes:
        return hmac.new(key, salt, hashlib.sha256).digest()

    def serialize(self, message: dict) -> bytes:
        if os.getpid() != self.pid:  # a forked child must not reuse the parent's nonces
            self._new_salt()
        nonce = next(self.numbers).to_bytes(12, "big")
        header = AEAD_HEADER.pack(AEAD_MAGIC, self.salt, nonce, time.time())
        return header + self.sealer.encrypt(nonce, msgpack.packb(message), header)

    def deserialize(self, data: bytes) -> dict:
        if not data.startswith(AEAD_MAGIC):
            return self.fallback.deserialize(data)
        header, sealed = data[: AEAD_HEADER.size], data[AEAD_HEADER.size :]
        _, salt, nonce, sent = AEAD_HEADER.unpack(header)
        age = time.time() - sent
        if age > self.window or age < -FUTURE_SKEW:
            raise ValueError("channel layer message outside its time window")
        openers = self.openers.get(salt)
        if openers is None:
            if len(self.openers) >= 1024:  # processes come and go: bound the cache
                self.openers.clear()
            openers = self.openers[salt] = [AESGCM(self._subkey(k, salt)) for k in self.keys]
        for opener in openers:
            try:
                return msgpack.unpackb(opener.decrypt(nonce, sealed, header))
            except InvalidTag:
                continue
        raise ValueError("channel layer message failed authentication")


class _Outbox:
    """Cross-process sends to one Redis host waiting for their round trip, and the task
    that writes them (None while the outbox is empty)."""

    __slots__ = ("entries", "writer")

    def __init__(self) -> None:
        # (queue key, serialised message, capacity, score, the sender's future)
        self.entries: deque[tuple[bytes | str, bytes, int, float, asyncio.Future]] = deque()
        self.writer: asyncio.Task | None = None


class LocalFirstRedisChannelLayer(Inboxes, RedisChannelLayer):
    """`RedisChannelLayer` that delivers in-process when it can and reads with one pump."""

    def __init__(self, *args, symmetric_encryption_keys=None, **kwargs) -> None:
        super().__init__(*args, symmetric_encryption_keys=symmetric_encryption_keys, **kwargs)
        self._init_inboxes()
        if symmetric_encryption_keys:  # without keys: channels_redis' plain msgpack
            self._serializer = AeadSerializer(
                symmetric_encryption_keys, self.expiry, fallback=self._serializer
            )
        self.mailboxes: dict[str, _Mailbox] = {}
        self.pumps: dict[str, asyncio.Task] = {}  # process queue name → its pump task
        self.pump_clients: dict[int, aioredis.Redis] = {}  # Redis host index → connection
        self._stopping = False
        self.pump_loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # messages from Redis for a local channel that was full
        self.undecodable = 0  # members of the process queue that did not decrypt
        self._next_sweep = 0.0
        self.local_prefix = f"specific.{self.client_prefix}!"
        self.outboxes: dict[int, _Outbox] = {}  # Redis host index → its pending sends
        self.outbox_loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # round trips that wrote cross-process sends (tests, benchmarks)
        self._last_score = 0.0
        self._bzmpop = True  # Redis >= 7; cleared at the first "unknown command"

    def create_pool(self, index: int):
        host = dict(self.hosts[index])
        if "address" not in host:  # Sentinel and the like: channels_redis' own pool
            return super().create_pool(index)
        address = host.pop("address")
        host.setdefault("max_connections", POOL_SIZE)
        host.setdefault("timeout", POOL_WAIT)
        return aioredis.BlockingConnectionPool.from_url(address, **host)

    # --- Whose channel is it -----------------------------------------------------------

    def is_local(self, channel: str) -> bool:
        """True for a consumer's channel (`new_channel()`'s default "specific" prefix)
        created by this layer instance. Channels of other prefixes keep going through
        Redis: `/healthz` sends itself a message on a "healthz." channel to prove that
        Redis answers, which an in-process delivery would not prove."""
        return channel.startswith(self.local_prefix)

    # --- Local mailboxes ---------------------------------------------------------------

    def _mailbox(self, channel: str) -> _Mailbox:
        box = self.mailboxes.get(channel)
        if box is None:
            box = self.mailboxes[channel] = _Mailbox()
        return box

    def _on_pump_loop(self) -> bool:
        """Local delivery wakes futures of the receivers' loop: only from that loop. A send
        from another loop (`async_to_sync` in a thread of its own) goes through Redis, and
        the pump delivers it."""
        return self.pump_loop is None or asyncio.get_running_loop() is self.pump_loop

    def _deliver(self, channel: str, message: dict, expires: float) -> bool:
        """Put the message into the channel's inbox, else hand it to a waiting receiver or
        queue it; False if the inbox or mailbox is full."""
        into_inbox = self._into_inbox(channel, message)
        if into_inbox is not None:
            return into_inbox
        box = self._mailbox(channel)
        while box.waiters:
            waiter = box.waiters.popleft()
            if not waiter.done():
                waiter.set_result(message)
                return True
        if len(box.messages) >= self.capacity:
            return False
        box.messages.append((expires, message))
        return True

    def _sweep(self, now: float) -> None:
        """Drop expired messages and forget idle mailboxes (channels whose consumer left)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        for channel, box in list(self.mailboxes.items()):
            while box.messages and box.messages[0][0] < now:
                box.messages.popleft()
            if box.idle():
                del self.mailboxes[channel]

    # --- Channel layer API -------------------------------------------------------------

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        if self.is_local(channel) and self._on_pump_loop():
            now = time.time()
            self._sweep(now)
            # A shallow copy, as the receiver of a Redis message gets its own dict.
            if not self._deliver(channel, dict(message), now + self.expiry):
                raise ChannelFull()
            return
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._send_through_redis(channel, message)

    async def _send_through_redis(self, channel: str, message: dict) -> None:
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            index = self.consistent_hash(channel)
            key = self.prefix + self.non_local_name(channel)
        else:
            index = next(self._send_index_generator)
            key = self.prefix + channel
        entry = (key, self.serialize(message), self.get_capacity(channel))
        (full,) = await self._put(index, [entry])
        if full:
            raise ChannelFull()

    # --- The outbox: one round trip per Redis host and event-loop pass -------------------

    def _score(self) -> float:
        """The send time, strictly increasing within the process: the pump pops by score,
        and equal scores would pop in the byte order of the members, not the send order."""
        now = time.time()
        score = now if now > self._last_score else self._last_score + SCORE_STEP
        self._last_score = score
        return score

    def _outbox(self, index: int) -> _Outbox | None:
        """This loop's outbox for a Redis host; None for a loop that may not use them (a
        second loop running at the same time, e.g. `async_to_sync` in a thread: the
        writer and the senders' futures belong to the first)."""
        loop = asyncio.get_running_loop()
        if self.outbox_loop is not loop:
            previous = self.outbox_loop
            running = previous is not None and previous.is_running() and not previous.is_closed()
            if running and loop is not self.pump_loop:
                return None
            # The serving loop takes over from a passing one (`/healthz`' async_to_sync):
            # that loop's writer keeps its own outbox and finishes with it.
            self.outbox_loop, self.outboxes = loop, {}  # a new loop (tests run one per test)
        outbox = self.outboxes.get(index)
        if outbox is None:
            outbox = self.outboxes[index] = _Outbox()
        return outbox

    async def _put(self, index: int, entries: list[tuple]) -> list[bool]:
        """Queue messages for one Redis host and wait for the round trip that writes them;
        True for each message whose queue was full (its sender raises ChannelFull)."""
        outbox = self._outbox(index)
        if outbox is None:
            return await self._write(index, [(*entry, self._score(), None) for entry in entries])
        loop = asyncio.get_running_loop()
        futures = []
        for key, payload, capacity in entries:
            future = loop.create_future()
            outbox.entries.append((key, payload, capacity, self._score(), future))
            futures.append(future)
        if outbox.writer is None:
            # Its first step runs in the next pass of the loop: every send made in this
            # pass is in the outbox by then and goes in the same round trip.
            outbox.writer = loop.create_task(self._writer(index, outbox))
        if len(futures) == 1:
            return [await futures[0]]
        return await asyncio.gather(*futures)

    async def _writer(self, index: int, outbox: _Outbox) -> None:
        """Write the outbox until it is empty, up to SEND_BATCH messages per round trip;
        what arrives while one is in flight goes in the next (one writer per host keeps
        the process' sends to a queue in order)."""
        batch: list[tuple] = []
        try:
            while outbox.entries:
                batch = [
                    outbox.entries.popleft() for _ in range(min(SEND_BATCH, len(outbox.entries)))
                ]
                try:
                    flags = await self._write(index, batch)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # each sender raises it (consumers: 4503)
                    for entry in batch:
                        if not entry[4].done():
                            entry[4].set_exception(_send_failed(error))
                    continue
                for entry, full in zip(batch, flags, strict=True):
                    if not entry[4].done():  # a cancelled sender: its message went anyway
                        entry[4].set_result(full)
                batch = []
        except asyncio.CancelledError:  # the loop is closing: nobody will write these
            for entry in (*batch, *outbox.entries):
                entry[4].cancel()
            outbox.entries.clear()
            raise
        finally:
            outbox.writer = None

    async def _write(self, index: int, batch: list[tuple]) -> list[bool]:
        keys = [entry[0] for entry in batch]
        args = [entry[1] for entry in batch]
        args += [entry[2] for entry in batch]
        args += [entry[3] for entry in batch]
        args += [int(time.time()) - int(self.expiry), int(self.expiry)]
        flags = await self._script(index, BATCH_SEND_SCRIPT, keys, args)
        self.batches += 1
        return [flag == 49 for flag in flags]  # b"1": that message's queue was full

    async def _drain_outboxes(self) -> None:
        """Let this loop's pending sends reach Redis (before its pools close)."""
        if self.outbox_loop is asyncio.get_running_loop():
            writers = [o.writer for o in self.outboxes.values() if o.writer is not None]
            await asyncio.gather(*writers, return_exceptions=True)

    async def _script(self, index: int, script: str, keys: list, args: list):
        connection = self.connection(index)
        try:
            return await connection.evalsha(_sha(script), len(keys), *keys, *args)
        except NoScriptError:  # first use on this Redis (or it was restarted)
            return await connection.eval(script, len(keys), *keys, *args)

    def attach(self, channel: str, queue: asyncio.Queue) -> None:
        assert self.is_local(channel), "only this process's consumers have inboxes"
        loop = asyncio.get_running_loop()
        self._ensure_pump(loop, self.non_local_name(channel))
        super().attach(channel, queue)
        box = self.mailboxes.pop(channel, None)
        now = time.time()
        for expires, message in box.messages if box else ():
            if expires >= now:  # as receive(): expired mail is not delivered
                queue.put_nowait(message)

    async def receive(self, channel: str) -> dict:
        if not self.is_local(channel):
            return await super().receive(channel)
        loop = asyncio.get_running_loop()
        self._ensure_pump(loop, self.non_local_name(channel))
        box = self._mailbox(channel)
        now = time.time()
        while box.messages:
            expires, message = box.messages.popleft()
            if expires >= now:
                return message
        waiter = loop.create_future()
        box.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed over in the same instant the receiver was cancelled: keep it.
                box.messages.appendleft((now + self.expiry, waiter.result()))
            elif waiter in box.waiters:
                box.waiters.remove(waiter)
            if box.idle() and self.mailboxes.get(channel) is box:
                del self.mailboxes[channel]
            raise

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(False) as pipe:
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group: str, message: dict) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        remote = []
        on_loop = self._on_pump_loop()
        now = time.time()
        self._sweep(now)
        for member in members:
            channel = member.decode("utf8")
            if not (self.is_local(channel) and on_loop):
                remote.append(channel)
            elif not self._deliver(channel, dict(message), now + self.expiry):
                logger.info("a local channel of a call group was full; event dropped")
        if remote:
            await self._group_send_through_redis(group, remote, message)

    async def _group_send_through_redis(self, group: str, channels: list, message: dict) -> None:
        # One message per process queue, listing that process' members of the group.
        by_host, messages, capacities = self._map_channel_keys_to_connection(channels, message)
        results = await asyncio.gather(
            *(
                self._put(index, [(key, messages[key], capacities[key]) for key in keys])
                for index, keys in by_host.items()
            )
        )
        over = sum(sum(flags) for flags in results)
        if over:
            logger.info("%s process queue(s) of a call group over capacity", over)

    # --- The pump: one reader of the process's Redis queue -------------------------------

    def _ensure_pump(self, loop: asyncio.AbstractEventLoop, queue: str) -> None:
        if self.pump_loop is not loop:
            self._adopt_loop(loop)
        task = self.pumps.get(queue)
        if task is None or task.done():
            self.pumps[queue] = loop.create_task(self._pump(queue))

    def _adopt_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop (tests run one per test): start over, stop pumps at its close."""
        if self.pump_loop is not None and self.pump_loop.is_running():
            # As RedisChannelLayer: one receiving loop per layer (daphne has one).
            raise RuntimeError("Two event loops are trying to receive() on one channel layer")
        for task in self.pumps.values():
            if not task.done() and not task.get_loop().is_closed():
                task.cancel()
        if self.pump_loop is not None:
            self.mailboxes, self.inboxes = {}, {}  # their waiters belong to the old loop
        self.pumps, self.pump_clients, self.pump_loop = {}, {}, loop
        self.connection(0)  # channels_redis wraps loop.close to close its pools; run before
        original_close = loop.close

        def close(this, *args, **kwargs):
            if self.pump_loop is this and not this.is_running():
                this.run_until_complete(self._stop_pumps())
            this.close = original_close
            return original_close(*args, **kwargs)

        loop.close = types.MethodType(close, loop)

    async def _pump(self, queue: str) -> None:
        index = self.consistent_hash(queue)
        key = self.prefix + queue
        connection = self._pump_client(index)
        try:
            while True:
                popped = await self._pop(connection, key)
                _raise_if_cancelled()
                if popped:
                    self._dispatch(popped)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self._stopping:
                self._fail_receivers(error)

    async def _pop(self, connection: aioredis.Redis, key: str) -> list:
        """Up to PUMP_BATCH (message, score) pairs of the queue, oldest first, waiting up
        to brpop_timeout for one: one round trip (BZMPOP), on Redis < 7 one or two."""
        if self._bzmpop:
            try:
                found = await connection.bzmpop(
                    self.brpop_timeout, 1, [key], min=True, count=PUMP_BATCH
                )
            except ResponseError as error:
                if "unknown command" not in str(error).lower():
                    raise
                self._bzmpop = False
            else:
                return found[1] if found else []
        popped = await connection.zpopmin(key, PUMP_BATCH)
        if popped:
            return popped
        found = await connection.bzpopmin(key, timeout=self.brpop_timeout)
        return [(found[1], found[2])] if found else []

    def _dispatch(self, popped: list) -> None:
        now = time.time()
        oldest = now - self.expiry
        self._sweep(now)
        for member, score in popped:
            if float(score) < oldest:
                continue  # older than `expiry`: stale, as RedisChannelLayer.send drops it
            try:
                message = self.deserialize(member)
                target = message.pop("__asgi_channel__")
            except Exception:  # any undecodable member, whatever raised
                # Not a reason to fail every receiver of the process (4503 for all calls)
                # over and over: drop it. Usually a process with another layer key.
                self.undecodable += 1
                logger.warning(
                    "a message in the process queue could not be decrypted and was dropped "
                    "(is CHANNEL_LAYER_KEY the same in every server process?)"
                )
                continue
            expires = float(score) + self.expiry
            if isinstance(target, str):
                self._deliver_from_redis(target, message, expires)
            else:  # a group message for several channels of this process
                for channel in target:
                    self._deliver_from_redis(channel, dict(message), expires)

    def _deliver_from_redis(self, channel: str, message: dict, expires: float) -> None:
        if not self._deliver(channel, message, expires):
            # Nobody to tell: the sender's ChannelFull check was against the process queue.
            self.dropped += 1
            logger.info("a local channel was full; a message from Redis was dropped")

    def _pump_client(self, index: int) -> aioredis.Redis:
        """The pump's own connection, without redis-py's retries: its blocking BZPOPMIN must
        end at once when the pump is stopped (on Python 3.11, redis-py's read timeout turns
        a cancellation into a TimeoutError, which a retry would answer with another
        5-second BZPOPMIN), and a dead Redis must reach the receivers at once (they close
        with 4503 and reconnect; the next pump opens a fresh connection)."""
        client = self.pump_clients.get(index)
        if client is None:
            host = {**self.hosts[index], "retry": AsyncRetry(NoBackoff(), 0)}
            host["retry_on_error"] = []
            # redis-py's default socket timeout (5 s) equals BZPOPMIN's: an idle pump
            # would time out just as Redis answers "nothing". Wait for Redis' answer.
            host["socket_timeout"] = self.brpop_timeout + PUMP_READ_MARGIN
            client = self.pump_clients[index] = aioredis.Redis(connection_pool=create_pool(host))
        return client

    def _fail_receivers(self, error: Exception) -> None:
        """Redis failed under the pump: every waiting receive() raises (as each waiting
        receiver of RedisChannelLayer would), every inbox gets the error; the next
        receive() or attach() starts a new pump."""
        for box in self.mailboxes.values():
            while box.waiters:
                waiter = box.waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(_unavailable(error))
        for queue, _ in self.inboxes.values():
            queue.put_nowait(_unavailable(error))

    # --- Flush and close ---------------------------------------------------------------

    async def _stop_pumps(self) -> None:
        self._stopping = True
        try:
            pending = [t for t in self.pumps.values() if not t.done()]
            for task in pending:
                task.cancel()
            for client in self.pump_clients.values():
                # Ends a blocked BZPOPMIN now (see _pump_client), not at its timeout.
                await client.connection_pool.disconnect(inuse_connections=True)
            await asyncio.gather(*pending, return_exceptions=True)
            for client in self.pump_clients.values():
                await _close_redis(client)
        finally:
            self.pumps, self.pump_clients, self._stopping = {}, {}, False

    async def flush(self) -> None:
        await self._drain_outboxes()
        await self._stop_pumps()
        self.mailboxes = {}
        await super().flush()

    async def close_pools(self) -> None:
        await self._drain_outboxes()
        await self._stop_pumps()
        await super().close_pools()


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    redis-py 8.1 on Python 3.11 can absorb the CancelledError of a blocking read and
    return (or read again) as if nothing happened; the task stays "cancelling" and the
    pump would loop forever, so a loop's shutdown (daphne's, a test's) never ends.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _unavailable(error: Exception) -> RedisConnectionError:
    """A fresh exception per receiver (one instance raised in many tasks would share and
    grow one traceback); a redis-py error, so the consumer closes with 4503."""
    failure = RedisConnectionError(f"channel layer receive failed: {type(error).__name__}")
    failure.__cause__ = error
    return failure


def _send_failed(error: Exception) -> Exception:
    """A fresh exception per sender of a failed batch (see _unavailable); a Redis error
    stays one of its class, so the consumer closes with 4503."""
    if not isinstance(error, RedisError):
        return error
    try:
        failure = type(error)(f"channel layer send failed: {error}")
    except Exception:  # an error class with another signature
        failure = RedisConnectionError(f"channel layer send failed: {type(error).__name__}")
    failure.__cause__ = error
    return failure
