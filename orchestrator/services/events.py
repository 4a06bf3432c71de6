"""Wake-ups for live event streams. Events themselves live in the database (``job_events``); this in-process bus
only tells SSE handlers in the same process to look now instead of at their next poll."""

from __future__ import annotations

import asyncio
import contextlib


class EventBus:
    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}

    def notify(self, job_id: int) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    async def wait(self, job_id: int, timeout: float) -> None:
        """Return when ``notify(job_id)`` is called or after ``timeout`` seconds, whichever is first."""
        event = self._events.get(job_id)
        if event is None:
            event = self._events[job_id] = asyncio.Event()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races with the wake-up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
