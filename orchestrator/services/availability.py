"""Outages, told apart from failures: a database or Triton outage is waited out with backoff, never turned into a
failed job.

- :func:`is_database_outage` — the database cannot be reached (connection refused or dropped, server shutting down
  or starting up, pool exhausted): callers answer 503 / retry instead of failing a job.
- :class:`Serving` — what a gateway offers to say whether any Triton server is healthy (``TritonGateway`` has it;
  a gateway without it, such as the tests' in-process stage runner, counts as always serving).
- :class:`Backoff` — doubling delays with jitter, capped.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import Protocol, runtime_checkable

import sqlalchemy.exc

# PostgreSQL SQLSTATEs that mean "the server is going away or not there yet" (class 08: connection exceptions;
# 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now; 53300 too many connections).
_OUTAGE_SQLSTATES = ("57P01", "57P02", "57P03", "53300")
_NET_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ENOTCONN, errno.EPIPE})
_OUTAGE_NAMES = ("ConnectionDoesNotExistError", "ConnectionRefusedError", "InterfaceError", "CannotConnectNowError")


def is_database_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it wraps) says the database is unreachable rather than the query wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
            return True  # the pool could not hand out a connection in time / a dead connection
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True  # connection-level errors (SQLite: "database is locked" past the busy timeout, too)
        sqlstate = str(getattr(current, "sqlstate", "") or "")
        if sqlstate.startswith("08") or sqlstate in _OUTAGE_SQLSTATES:
            return True
        if isinstance(current, ConnectionError | TimeoutError) or type(current).__name__ in _OUTAGE_NAMES:
            return True
        if isinstance(current, socket.gaierror) or (isinstance(current, OSError) and current.errno in _NET_ERRNOS):
            return True  # socket errors while connecting (not file errors: a full disk is a job's failure)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False


def brief(exc: BaseException) -> str:
    """``Type: first line`` of an error, short enough for a log line or a metric-free message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


@runtime_checkable
class Serving(Protocol):
    def serving(self) -> bool:
        """True while at least one server is healthy."""
        ...

    async def wait_serving(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a healthy server; True when there is one."""
        ...


def gateway_serving(gateway: object) -> bool:
    return gateway.serving() if isinstance(gateway, Serving) else True


async def wait_gateway(gateway: object, timeout: float) -> bool:
    if isinstance(gateway, Serving):
        return await gateway.wait_serving(timeout)
    return True


class Backoff:
    """``first``, then doubling up to ``cap`` seconds, each with ±20 % jitter (so that many waiters do not retry in
    lock step); :meth:`reset` after a success."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        if first <= 0 or cap <= 0:
            raise ValueError(f"Backoff(first={first}, cap={cap}): both must be > 0 seconds")
        first = min(first, cap)
        self.first = first
        self.cap = cap
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())
