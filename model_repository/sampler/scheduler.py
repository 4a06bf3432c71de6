"""The step scheduler: one loop owns the network requests of every active song, of every family, and sends requests of
the same shape as one batched call, so N concurrent songs cost one DiT call per step with no waiting window.

A song is its runner's generator (:meth:`~model_repository.sampler.protocol.FamilyRunner.steps`): it yields one
:class:`~model_repository.sampler.protocol.NetworkRequest` at a time and is sent that request's outputs. The loop:

* **groups** the pending requests by (model, version, input shapes past the batch axis and dtypes, output names):
  ``dit`` requests of songs in the same frame and condition buckets share a group whatever step, timestep, mask or
  guidance they are at (a guided song's request holds its conditional and unconditional rows); encoders and decoders
  group the same way, so songs that are ready at the same moment share those calls too;
* **calls** each group once, its rows concatenated along axis 0 up to the network's row cap (``max_batch_size`` of
  its ``config.pbtxt``: the TensorRT profile's max batch on GPU), and splits the outputs back by rows; a network
  served by several instances (``instance_group`` count, e.g. ``vae_decoder`` on a CPU machine) gets the group's
  songs as that many concurrent calls of about equal rows instead, so every instance works. At most one round of
  calls per group is in flight: a song that becomes ready while its group is running rides the next call, at the next
  step boundary, with the others. Groups of other buckets or networks run concurrently and never wait on each other;
* **rotates fairly** when a group holds more rows than the cap: requests go oldest-waiting first (strictly, so a big
  request is never overtaken forever), the rest ride the next call;
* **lines songs up at the start**: a song's first diffusion request waits while songs that were already encoding when
  it got there are still encoding (or are themselves waiting so), so songs submitted together take every DiT step
  together (and finish together, so their decodes share calls too). At most ``max_start_hold_s`` seconds (a time,
  not a count of rounds: on a busy machine the others' encodes take longer, not more rounds), so a stream of new songs
  cannot hold it back for long; songs past their first step never wait for anyone;
* checks each waiting song's ``cancelled()`` every round; a failing call fails only the songs in it, with its message.

The songs' own Python (Euler steps, padding, progress events) runs on the loop thread between calls; network calls run
on a small pool so a long decode does not stall other songs' steps, and a song's heavy CPU work (a yielded
:class:`~model_repository.sampler.protocol.HostWork`, e.g. the lyric alignment's DTW) runs on a worker pool of its
own, so the other songs keep stepping while it runs. Nothing here knows Triton: the ``sampler`` model passes its BLS
caller, tests a fake one.
"""

from __future__ import annotations

import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_repository.sampler.protocol import (
    Cancelled,
    HostWork,
    IsCancelled,
    NetworkCaller,
    NetworkRequest,
    Outputs,
    SongResult,
    SongSteps,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 16
GroupKey = tuple[Any, ...]
OnDone = Callable[[SongResult], None]
OnError = Callable[[BaseException], None]


def group_key(request: NetworkRequest, song_id: int) -> GroupKey:
    """Requests with equal keys can be concatenated along axis 0. A request whose inputs disagree on the batch axis
    (or have none) gets a key of its own."""
    inputs = request.inputs
    batched = request.rows > 0 and all(v.ndim >= 1 and v.shape[0] == request.rows for v in inputs.values())
    shapes = tuple(sorted((name, v.shape[1:], v.dtype.str) for name, v in inputs.items()))
    key: GroupKey = (request.model, request.version, shapes, tuple(request.outputs))
    return key if batched else (*key, "song", song_id)


class RowCaps:
    """Rows per call for each network: ``max_batch_size`` from ``<repository>/<model>/config.pbtxt`` (0: no batch
    axis, so 1), ``default`` where the file is missing, never more than ``limit`` when given; :meth:`instances`: the
    instance count of its ``instance_group`` (1 where the file or the entry is missing)."""

    _PATTERN = re.compile(r"^\s*max_batch_size\s*:\s*(\d+)", re.MULTILINE)
    _INSTANCES = re.compile(r"^\s*instance_group\s*\[\s*\{\s*count\s*:\s*(\d+)", re.MULTILINE)

    def __init__(self, repository: Path | None, *, default: int = DEFAULT_MAX_ROWS, limit: int | None = None) -> None:
        if default < 1 or (limit is not None and limit < 1):
            raise ValueError(f"row caps must be >= 1, got default={default} limit={limit}")
        self.repository, self.default, self.limit = repository, default, limit
        self._caps: dict[str, int] = {}
        self._instances: dict[str, int] = {}

    def __call__(self, model: str) -> int:
        if model not in self._caps:
            cap = self.default
            path = self.repository / model / "config.pbtxt" if self.repository is not None else None
            if path is not None and path.is_file():
                found = self._PATTERN.search(path.read_text())
                cap = max(int(found.group(1)), 1) if found else self.default
            elif path is not None:
                logger.warning("no %s; %s calls take at most %d rows", path, model, cap)
            self._caps[model] = min(cap, self.limit) if self.limit is not None else cap
        return self._caps[model]

    def instances(self, model: str) -> int:
        if model not in self._instances:
            path = self.repository / model / "config.pbtxt" if self.repository is not None else None
            found = self._INSTANCES.search(path.read_text()) if path is not None and path.is_file() else None
            self._instances[model] = max(int(found.group(1)), 1) if found else 1
        return self._instances[model]


@dataclass
class ModelStats:
    calls: int = 0
    rows: int = 0
    seconds: float = 0.0  # wall time of the calls (network + transport)


@dataclass
class SchedulerStats:
    models: dict[str, ModelStats] = field(default_factory=dict)
    advance_seconds: float = 0.0  # the songs' own Python on the loop thread
    songs_done: int = 0
    songs_failed: int = 0
    host_work_seconds: float = 0.0  # the songs' host work, on the worker pool

    def copy(self) -> SchedulerStats:
        models = {m: ModelStats(s.calls, s.rows, s.seconds) for m, s in self.models.items()}
        return SchedulerStats(models, self.advance_seconds, self.songs_done, self.songs_failed, self.host_work_seconds)


@dataclass(eq=False)
class _Song:
    id: int
    steps: SongSteps
    cancelled: IsCancelled
    on_done: OnDone
    on_error: OnError
    pending: NetworkRequest | None = None
    key: GroupKey = ()
    since: int = 0  # when its request became pending (a sequence number: lower waited longer)
    in_flight: bool = False  # in a network call or running host work
    started: bool = False  # has sent a diffusion request
    hold_for: frozenset[int] = frozenset()  # songs that were encoding when it reached its first diffusion request
    held_since: float | None = None  # when it was first held at the start line


@dataclass
class _Finished:
    key: GroupKey
    songs: list[_Song]
    outputs: Outputs | None
    error: BaseException | None
    seconds: float


@dataclass
class _Worked:
    song: _Song
    value: Any
    error: BaseException | None
    seconds: float


_STOP = object()
_PRIME = object()  # _advance's answer for a song's first step


class StepScheduler:
    def __init__(
        self,
        call: NetworkCaller,
        max_rows: Callable[[str], int] = lambda model: DEFAULT_MAX_ROWS,
        *,
        instances: Callable[[str], int] = lambda model: 1,
        call_threads: int = 4,
        work_threads: int = 1,
        max_start_hold_s: float = 2.0,
        poll_seconds: float = 0.25,
    ) -> None:
        self._call = call
        self._max_hold_s = max_start_hold_s
        self._max_rows = max_rows
        self._instances = instances
        self._poll = poll_seconds
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._songs: dict[int, _Song] = {}
        self._in_flight: dict[GroupKey, int] = {}  # group -> its calls still running
        self._ids = itertools.count()
        self._seq = itertools.count()
        self._stats = SchedulerStats()
        self._pool = ThreadPoolExecutor(max_workers=call_threads, thread_name_prefix="sampler-call")
        self._work_pool = ThreadPoolExecutor(max_workers=work_threads, thread_name_prefix="sampler-work")
        self._thread = threading.Thread(target=self._loop, name="sampler-steps", daemon=True)
        self._closed = False
        self._thread.start()

    # ---- public ------------------------------------------------------------------------------------------------------
    def submit(self, steps: SongSteps, *, on_done: OnDone, on_error: OnError,
               cancelled: IsCancelled = lambda: False) -> None:
        """Add a song; exactly one of ``on_done(result)`` / ``on_error(exc)`` is called later, on the loop thread."""
        if self._closed:
            raise RuntimeError("sampler: the step scheduler is closed (the model is unloading); retry the request")
        self._events.put(_Song(next(self._ids), steps, cancelled, on_done, on_error))

    @property
    def stats(self) -> SchedulerStats:
        return self._stats.copy()

    @property
    def active(self) -> int:
        return len(self._songs)

    def close(self, timeout: float = 30.0) -> None:
        self._closed = True
        self._events.put(_STOP)
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._work_pool.shutdown(wait=False, cancel_futures=True)

    # ---- the loop ----------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            events = self._drain()
            if any(e is _STOP for e in events):
                break
            try:
                for event in sorted(events, key=lambda e: not isinstance(e, _Song)):  # new songs first
                    if isinstance(event, _Song):
                        self._songs[event.id] = event
                        self._advance(event)
                    elif isinstance(event, _Worked):
                        self._worked(event)
                    else:
                        self._finish(event)
                self._check_cancelled()
                self._dispatch()
            except Exception:  # noqa: BLE001 - a scheduler bug must not silently stop every song
                logger.exception("sampler: step scheduler round failed")
        for song in list(self._songs.values()):
            self._fail(song, Cancelled("sampler: the model is unloading; the request was stopped, retry it"))

    def _drain(self) -> list[Any]:
        try:
            events = [self._events.get(timeout=self._poll)]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def _advance(self, song: _Song, answer: Any = _PRIME, error: BaseException | None = None) -> None:
        """Run the song to its next request (``answer`` answers the previous one, ``error`` is raised into it; neither
        primes it). Host work goes to the worker pool; the song waits for it like for a network call."""
        started = time.perf_counter()
        try:
            if error is not None:
                request = song.steps.throw(error)
            else:
                request = next(song.steps) if answer is _PRIME else song.steps.send(answer)
        except StopIteration as done:
            self._songs.pop(song.id, None)
            self._stats.songs_done += 1
            self._notify(song.on_done, done.value)
            return
        except Exception as exc:  # noqa: BLE001 - request errors, Cancelled and bugs all end this song only
            self._fail(song, exc)
            return
        finally:
            self._stats.advance_seconds += time.perf_counter() - started
        if isinstance(request, HostWork):
            song.in_flight = True
            self._work_pool.submit(self._run_work, song, request)
            return
        song.pending, song.key, song.since = request, group_key(request, song.id), next(self._seq)
        if request.stage == "diffusion" and not song.started:
            song.hold_for = frozenset(s.id for s in self._songs.values() if s is not song and self._encoding(s))

    def _finish(self, done: _Finished) -> None:
        left = self._in_flight.pop(done.key, 1) - 1
        if left > 0:
            self._in_flight[done.key] = left
        model = done.songs[0].pending.model if done.songs[0].pending else "?"
        stats = self._stats.models.setdefault(model, ModelStats())
        rows = sum(s.pending.rows for s in done.songs if s.pending)
        stats.calls, stats.rows, stats.seconds = stats.calls + 1, stats.rows + rows, stats.seconds + done.seconds
        error = done.error
        if error is None and done.outputs is not None and len(done.songs) > 1:
            wrong = {n: v.shape for n, v in done.outputs.items() if v.ndim == 0 or v.shape[0] != rows}
            if wrong:
                error = RuntimeError(f"sampler: {model} returned outputs {wrong} for a {rows}-row call; its outputs "
                                     "must keep the batch axis (check the network's contract)")
        offset = 0
        for song in done.songs:
            song.in_flight = False
            if song.id not in self._songs:  # failed meanwhile (unloading)
                continue
            if error is not None or done.outputs is None:
                self._fail(song, error or RuntimeError(f"sampler: {model} returned no outputs"))
                continue
            assert song.pending is not None
            n = song.pending.rows
            outputs = done.outputs
            part = outputs if len(done.songs) == 1 else {k: v[offset : offset + n] for k, v in outputs.items()}
            offset += n
            song.pending = None
            self._advance(song, part)

    def _worked(self, done: _Worked) -> None:
        self._stats.host_work_seconds += done.seconds
        done.song.in_flight = False
        if done.song.id in self._songs:  # not failed meanwhile (unloading)
            self._advance(done.song, done.value, done.error)

    def _check_cancelled(self) -> None:
        for song in list(self._songs.values()):
            if song.in_flight:
                continue
            try:
                cancelled = song.cancelled()
            except Exception:  # noqa: BLE001 - a broken probe is treated as "not cancelled"
                logger.exception("sampler: cancellation check failed")
                cancelled = False
            if cancelled:
                self._fail(song, Cancelled("sampler: request cancelled"))

    def _dispatch(self) -> None:
        groups: dict[GroupKey, list[_Song]] = {}
        for song in self._songs.values():
            if song.pending is None or song.in_flight or song.key in self._in_flight or self._held(song):
                continue
            groups.setdefault(song.key, []).append(song)
        for key, songs in groups.items():
            songs.sort(key=lambda s: s.since)
            first = songs[0].pending
            assert first is not None
            cap = self._max_rows(first.model)
            chosen: list[_Song] = []
            rows = 0
            for song in songs:
                assert song.pending is not None
                if chosen and rows + song.pending.rows > cap:
                    break  # strictly oldest first: the next call starts with this one
                chosen.append(song)
                rows += song.pending.rows
            for song in chosen:
                song.in_flight = True
                song.started = song.started or first.stage == "diffusion"
            calls = _split(chosen, self._instances(first.model))
            self._in_flight[key] = len(calls)
            for songs_of_call in calls:
                self._pool.submit(self._run_call, key, songs_of_call)

    def _run_call(self, key: GroupKey, songs: list[_Song]) -> None:
        """On a pool thread: one network call for the group's rows."""
        started = time.perf_counter()
        outputs, error = None, None
        try:
            requests = [s.pending for s in songs if s.pending is not None]
            first = requests[0]
            if len(requests) == 1:
                inputs = first.inputs
            else:
                inputs = {name: np.concatenate([r.inputs[name] for r in requests]) for name in first.inputs}
            outputs = self._call(first.model, first.version, inputs, list(first.outputs))
        except Exception as exc:  # noqa: BLE001 - reported to the group's songs
            error = exc
        self._events.put(_Finished(key, songs, outputs, error, time.perf_counter() - started))

    def _run_work(self, song: _Song, work: HostWork) -> None:
        """On a worker thread: one song's host work."""
        started = time.perf_counter()
        value, error = None, None
        try:
            value = work.fn()
        except Exception as exc:  # noqa: BLE001 - raised into the song
            error = exc
        self._events.put(_Worked(song, value, error, time.perf_counter() - started))

    # ---- helpers -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _encoding(song: _Song) -> bool:
        return song.pending is not None and song.pending.stage == "encode"

    def _at_start(self, song: _Song) -> bool:
        return (
            not song.started
            and song.pending is not None
            and song.pending.stage == "diffusion"
            and (song.held_since is None or time.monotonic() - song.held_since < self._max_hold_s)
        )

    def _waiting(self, song: _Song) -> bool:
        """Songs it waits for still encode (directly, or through songs at the start line waiting for them). Hold sets
        only name songs that reached the start line later, so the recursion ends."""
        others = (self._songs.get(i) for i in song.hold_for)
        return any(o is not None and (self._encoding(o) or (self._at_start(o) and self._waiting(o))) for o in others)

    def _held(self, song: _Song) -> bool:
        """Once per song and round: held at the start line (for at most ``max_start_hold_s`` in all)?"""
        if not self._at_start(song) or not self._waiting(song):
            return False
        if song.held_since is None:
            song.held_since = time.monotonic()
        return True

    def _fail(self, song: _Song, exc: BaseException) -> None:
        self._songs.pop(song.id, None)
        self._stats.songs_failed += 1
        song.pending = None
        try:
            song.steps.close()
        except Exception:  # noqa: BLE001 - the song is over either way
            logger.exception("sampler: closing a failed song raised")
        self._notify(song.on_error, exc)

    @staticmethod
    def _notify(callback: Callable[[Any], None], value: Any) -> None:
        try:
            callback(value)
        except Exception:  # noqa: BLE001 - a failed response send must not stop the other songs
            logger.exception("sampler: song callback failed")


def _split(songs: list[_Song], parts: int) -> list[list[_Song]]:
    """``songs`` (in order) as at most ``parts`` consecutive runs of about equal rows, one call per instance."""
    rows = [s.pending.rows if s.pending else 1 for s in songs]
    parts = max(1, min(parts, len(songs)))
    if parts == 1:
        return [songs]
    calls: list[list[_Song]] = [[]]
    target, taken = sum(rows) / parts, 0
    for song, n in zip(songs, rows, strict=True):
        if calls[-1] and len(calls) < parts and taken + n / 2 > target * len(calls):
            calls.append([])
        calls[-1].append(song)
        taken += n
    return calls
