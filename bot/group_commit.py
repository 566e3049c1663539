"""Group commit: concurrent writes coalesced into one statement, one transaction and one WAL flush.

Every webhook's 200 waits for its commit, and a commit waits for its WAL flush. Written one by one,
concurrent webhooks each pay a round trip, a transaction and a flush; here the writes that arrive
while a flush is in progress wait for it to return and then go together in the next one. A write
that arrives while none is in progress lets the event loop run once first (or `linger` seconds),
so the requests already read join it. Its caller resumes only when the flush that carried it has
returned: what it is told was written is committed.

Not a library's: asyncpg has no group commit, and PostgreSQL's own (`commit_delay`) still costs
a statement, a transaction and a round trip per write. `in_flight` flushes at a time: with one,
the next batch forms while the previous one is written; with two, one batch's statement runs while
the other's commit waits for its flush.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# writes → one outcome per write, in order: its result, or the exception that write alone raises
Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, linger: float = 0.0, max_batch: int = 256,
                 in_flight: int = 1) -> None:
        self._flush = flush
        self.linger = linger
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._gathering = False  # a writer is lingering: what arrives now goes in its batch

    async def submit(self, item: T) -> R:
        """Write `item` with whatever else is waiting; returns once its flush has returned."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if not self._gathering and len(self._writers) < self.in_flight:
            # its own task: a caller that goes away (a cancelled request) must not stop its neighbours' flush
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await done

    async def _write(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            self._gathering = True
            try:
                await asyncio.sleep(self.linger)
            finally:
                self._gathering = False
            while self._waiting:
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                except Exception as exc:  # the flush isolates its writes' own errors; this is anything else
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():  # its caller was cancelled; the write stands
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
                batch = []
        except BaseException:  # cancelled (shutdown): no caller may wait for a flush that will not come
            for _, done in batch + self._waiting:
                done.cancel()
            self._waiting = []
            raise
        finally:
            # at once, not in a done-callback: a write submitted after this loop ended must start a writer
            self._writers.discard(asyncio.current_task())
