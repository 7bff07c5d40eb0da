"""Live event streams (``hookline listen``): how a server process learns of an account's
new events and hands them to its open streams.

Each open stream reads its account's events newer than its own cursor with an indexed
query (:mod:`hookline.store.event_feed`) whenever something may have changed: at once after
an emitting commit in this process (``Database.on_wake``), on PostgreSQL also when another
process NOTIFYs, and otherwise every ``stream_poll_seconds`` (events that reached no
webhook wake no one, so the poll is what shows them). Nothing is added to the emitting
paths; the cost is one small query per open stream per wake-up or poll, and open streams are
bounded per account and end when idle. Several processes on PostgreSQL need nothing
shared: each stream reads the database itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from hookline.error_codes import ErrorCode
from hookline.errors import HooklineError
from hookline.runtime import Runtime
from hookline.store.capabilities import notifies_across_processes
from hookline.store.event_feed import FeedCursor, FeedEvent, event_time, read_new_events

KEEPALIVE_SECONDS = 15.0  # a comment line this often finds dead connections and proxies
MIN_READ_INTERVAL = 0.05  # wake-ups in a burst are coalesced into one read per stream


class TooManyStreams(HooklineError):
    status_code = 429
    error_code = ErrorCode.TOO_MANY_STREAMS


class StreamEnd(enum.StrEnum):
    """Why the server ended a stream (sent to the client as the last message)."""

    SHUTDOWN = "shutdown"
    IDLE = "idle"
    TOKEN_EXPIRED = "token_expired"


KEEPALIVE = None  # what :meth:`Stream.items` yields when there is nothing to say


@dataclass(eq=False)
class Stream:
    """One open stream: an account, an optional set of event types, and its cursor."""

    hub: StreamHub
    account_id: uuid.UUID
    types: frozenset[str]
    cursor: FeedCursor
    expires_at: datetime | None
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    ended: StreamEnd | None = None

    async def items(self) -> AsyncIterator[list[FeedEvent] | StreamEnd | None]:
        """Batches of new events, ``None`` as a keep-alive, and last the reason it ended."""
        settings = self.hub.runtime.settings
        db = self.hub.runtime.db
        clock = self.hub.runtime.clock
        last_event = last_sent = next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            if self.ended is None and (self.woken.is_set() or now >= next_poll):
                self.woken.clear()  # before reading: a commit during the read wakes again
                next_poll = now + settings.stream_poll_seconds
                async with db.read() as conn:
                    batch = await read_new_events(conn, self.account_id, self.cursor)
                batch = [e for e in batch if not self.types or e.event in self.types]
                if batch:
                    last_event = last_sent = now
                    yield batch
            if self.ended is None:
                if now - last_event >= settings.stream_idle_seconds:
                    self.ended = StreamEnd.IDLE
                elif self.expires_at is not None and clock.now() >= self.expires_at:
                    self.ended = StreamEnd.TOKEN_EXPIRED
                elif now - last_sent >= KEEPALIVE_SECONDS:
                    last_sent = now
                    yield KEEPALIVE
            if self.ended is not None:
                yield self.ended
                return
            now = time.monotonic()
            timeout = max(
                0.0,
                min(
                    next_poll,
                    last_event + settings.stream_idle_seconds,
                    last_sent + KEEPALIVE_SECONDS,
                )
                - now,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), timeout)
            await asyncio.sleep(MIN_READ_INTERVAL)

    def end(self, reason: StreamEnd) -> None:
        self.ended = reason
        self.woken.set()

    def close(self) -> None:
        """Give the slot back (the connection is gone or the stream ended)."""
        self.hub.release(self)


class StreamHub:
    """The open streams of one server process, and the wake-ups that reach them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._streams: set[Stream] = set()
        self._closing = False
        self._listening = False
        self._listen_stop = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    def count(self, account_id: uuid.UUID) -> int:
        return sum(1 for s in self._streams if s.account_id == account_id)

    async def open(
        self,
        account_id: uuid.UUID,
        *,
        types: frozenset[str] = frozenset(),
        resume_after: uuid.UUID | None = None,
        expires_at: datetime | None = None,
    ) -> Stream:
        """A new stream from now on (or from just after ``resume_after``, one of the
        account's events); :class:`TooManyStreams` past the account's limit."""
        if self._closing:
            raise TooManyStreams("The server is shutting down", error_code=ErrorCode.SHUTTING_DOWN)
        limit = self.runtime.settings.stream_max_per_account
        if self.count(account_id) >= limit:
            raise TooManyStreams(
                f"Too many open event streams for this account ({limit} of {limit})",
                detail="close another `hookline listen` or raise HOOKLINE_STREAM_MAX_PER_ACCOUNT",
            )
        stream = Stream(self, account_id, types, FeedCursor(self.runtime.clock.now()), expires_at)
        self._streams.add(stream)  # counted before the first await: no race past the limit
        try:
            async with self.runtime.db.read() as conn:
                since = None
                if resume_after is not None:
                    since = await event_time(conn, account_id, resume_after)
                if resume_after is not None and since is not None:
                    stream.cursor = FeedCursor(since, seen={resume_after: since})
                else:  # what is already there is not new: read it past without sending it
                    await read_new_events(conn, account_id, stream.cursor)
        except BaseException:
            self.release(stream)
            raise
        self._start_wakeups()
        return stream

    def release(self, stream: Stream) -> None:
        self._streams.discard(stream)

    def wake(self, *_: object) -> None:
        for stream in self._streams:
            stream.woken.set()

    def _start_wakeups(self) -> None:
        if self._listening:
            return
        self._listening = True
        db = self.runtime.db
        db.on_wake(self.wake)
        if notifies_across_processes(db):
            from hookline.store.listen import listen

            self._listener = asyncio.create_task(
                listen(
                    db.url,
                    db.notify_channel,
                    self.wake,
                    self._listen_stop,
                    ignore=db.wakeups.sent_here,  # heard in-process already
                ),
                name="hookline:stream-listen",
            )

    async def shutdown(self) -> None:
        """End every stream (each sends its last message) and refuse new ones."""
        self._closing = True
        for stream in list(self._streams):
            stream.end(StreamEnd.SHUTDOWN)
        self._listen_stop.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
