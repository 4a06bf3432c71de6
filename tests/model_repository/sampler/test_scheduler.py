"""The step scheduler's grouping, row cap, fair rotation, start-line alignment, failures and cancellation, in-process
with a fake network (no Triton): each fake song yields requests whose rows carry (song, step) so every call's
composition can be read back, and checks that it is sent exactly its own rows back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_repository.sampler.protocol import Cancelled, NetworkRequest, SongSteps, drive, host_work, network
from model_repository.sampler.scheduler import RowCaps, StepScheduler, group_key


class FakeNet:
    """``y = 2 x``; records (model, the songs of each row) per call; ``gate`` holds the first call until set;
    ``fail`` names a model whose calls raise."""

    def __init__(self, *, gate: bool = False, fail: str | None = None, delay: Callable[[str], float] | None = None):
        self.calls: list[tuple[str, list[int]]] = []
        self.gate = threading.Event()
        if not gate:
            self.gate.set()
        self.started = threading.Event()
        self.fail, self.delay = fail, delay
        self.lock = threading.Lock()

    def __call__(self, model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]):
        self.started.set()
        self.gate.wait(10)
        if self.delay:
            threading.Event().wait(self.delay(model))
        with self.lock:
            self.calls.append((model, [int(v) for v in inputs["x"][:, 0]]))
        if model == self.fail:
            raise RuntimeError(f"sampler: {model} version {version} failed: boom")
        return {"y": inputs["x"] * 2}

    def rows(self, model: str) -> list[list[int]]:
        return [songs for m, songs in self.calls if m == model]


def fake_song(song: int, steps: int, *, model: str = "dit", rows: int = 1, width: int = 4,
              encode: str | None = None) -> SongSteps:
    """Optionally one ``encode`` call, then ``steps`` diffusion calls of ``rows`` rows [rows, width]."""
    if encode:
        yield from network(encode, "1", {"x": np.full((1, 3), song, np.float32)}, ["y"], "encode")
    for step in range(steps):
        x = np.full((rows, width), song, np.float32)
        x[:, 1] = step
        out = yield from network(model, "1", {"x": x}, ["y"])
        assert np.array_equal(out["y"], 2 * x), f"song {song} step {step} got another song's rows"
    return np.array([song]), [song], {"steps": steps}


class Run:
    """Submit songs; ``wait()`` returns {index: result or exception}."""

    def __init__(self, scheduler: StepScheduler) -> None:
        self.scheduler, self.results, self.lock = scheduler, {}, threading.Lock()
        self.expected, self.done = 0, threading.Event()

    def submit(self, steps: SongSteps, cancelled: Callable[[], bool] = lambda: False) -> None:
        index = self.expected
        self.expected += 1
        self.done.clear()
        self.scheduler.submit(steps, on_done=lambda r: self._put(index, r), on_error=lambda e: self._put(index, e),
                              cancelled=cancelled)

    def _put(self, index: int, value: Any) -> None:
        with self.lock:
            self.results[index] = value
            if len(self.results) == self.expected:
                self.done.set()

    def wait(self) -> dict[int, Any]:
        assert self.done.wait(20), f"songs did not finish: {self.results}"
        return self.results

    def behind_a_held_call(self, net: FakeNet, first: SongSteps, *later: SongSteps) -> dict[int, Any]:
        """``first``'s first call is held at ``net``'s gate while ``later`` arrive; then the gate opens: all results."""
        self.submit(first)
        assert net.started.wait(5)
        for steps in later:
            self.submit(steps)
        threading.Event().wait(0.1)
        net.gate.set()
        return self.wait()


@pytest.fixture
def make():
    made: list[StepScheduler] = []

    def build(net: FakeNet, caps: dict[str, int] | None = None) -> Run:
        scheduler = StepScheduler(net, lambda model: (caps or {}).get(model, 16), poll_seconds=0.02)
        made.append(scheduler)
        return Run(scheduler)

    yield build
    for s in made:
        s.close()


def test_drive_answers_one_request_at_a_time():
    net = FakeNet()
    audio, seeds, info = drive(fake_song(3, 4, rows=2), net)
    assert audio.tolist() == [3] and info == {"steps": 4} and net.rows("dit") == [[3, 3]] * 4


def test_a_song_joins_the_running_batch_at_the_next_step(make):
    """Song 0's first call is in flight while songs 1-4 arrive: they ride song 0's second call, one call per step."""
    net = FakeNet(gate=True)
    results = make(net).behind_a_held_call(net, fake_song(0, 3), *(fake_song(song, 3) for song in range(1, 5)))
    assert all(results[i][0].tolist() == [i] for i in range(5))
    assert net.rows("dit") == [[0], [1, 2, 3, 4, 0], [1, 2, 3, 4, 0], [1, 2, 3, 4]]


def test_other_shapes_and_networks_get_calls_of_their_own(make):
    net = FakeNet()
    run = make(net)
    run.submit(fake_song(0, 2, width=4))
    run.submit(fake_song(1, 2, width=8))  # another length bucket
    run.submit(fake_song(2, 2, model="v1_dit"))
    run.wait()
    assert sorted(sum(net.rows("dit"), [])) == [0, 0, 1, 1]
    assert all(len(set(songs)) == 1 for songs in net.rows("dit"))  # the two buckets never share a call
    assert net.rows("v1_dit") == [[2], [2]]


def test_rows_over_the_cap_rotate_oldest_first(make):
    """Cap 4, six one-row songs of 3 steps: every call is full but the last, and the songs left out of a call lead
    the next one, so no song falls more than one call behind."""
    net = FakeNet(gate=True)
    make(net, {"dit": 4}).behind_a_held_call(net, fake_song(0, 3), *(fake_song(song, 3) for song in range(1, 6)))
    calls = net.rows("dit")
    assert calls == [[0], [1, 2, 3, 4], [5, 0, 1, 2], [3, 4, 5, 0], [1, 2, 3, 4], [5]]
    assert all(len(c) <= 4 for c in calls)


def test_a_big_request_is_never_overtaken(make):
    """Strict age order, cap 4: after a 3-row request the next 3-row one does not fit, and the 1-row request behind it
    (which would) waits too, so it cannot overtake it call after call; both go next."""
    net = FakeNet(gate=True)
    later = (fake_song(1, 1, rows=3), fake_song(2, 1, rows=3), fake_song(3, 1))
    make(net, {"dit": 4}).behind_a_held_call(net, fake_song(0, 1), *later)
    assert net.rows("dit") == [[0], [1, 1, 1], [2, 2, 2, 3]]


def test_songs_that_encode_together_start_diffusion_together(make):
    """Song 1 arrives while song 0 encodes: song 0 waits at its first step until song 1 is encoded, then both take
    every step in one call."""
    net = FakeNet(gate=True)
    make(net).behind_a_held_call(net, fake_song(0, 4, encode="enc"), fake_song(1, 4, encode="enc"))
    assert net.rows("enc") == [[0], [1]]
    assert net.rows("dit") == [[0, 1]] * 4


def test_a_running_song_never_waits_for_a_newcomer(make):
    """Song 0 is past its first step when song 1 arrives with a slow encoder: song 0 keeps stepping alone meanwhile."""
    net = FakeNet(delay=lambda model: 0.3 if model == "enc" else 0.02)
    run = make(net)
    run.submit(fake_song(0, 12))
    threading.Event().wait(0.1)
    run.submit(fake_song(1, 3, encode="enc"))
    run.wait()
    calls = net.rows("dit")
    first_shared = next(i for i, c in enumerate(calls) if 1 in c)
    assert first_shared >= 3 and all(c == [0] for c in calls[:first_shared])
    assert sum(1 in c for c in calls) == 3


def test_a_failing_call_fails_only_its_songs(make):
    net = FakeNet(fail="bad")
    run = make(net)
    run.submit(fake_song(0, 3, model="bad"))
    run.submit(fake_song(1, 3, model="bad"))
    run.submit(fake_song(2, 3))
    results = run.wait()
    for i in (0, 1):
        assert isinstance(results[i], RuntimeError) and "bad version 1 failed: boom" in str(results[i])
    assert results[2][0].tolist() == [2]
    assert run.scheduler.active == 0


def test_a_song_error_and_a_cancellation_end_that_song_only(make):
    def broken() -> SongSteps:
        yield from network("dit", "1", {"x": np.zeros((1, 4), np.float32)}, ["y"])
        raise ValueError("sampler: field 'x' is wrong; fix it")

    cancel = threading.Event()
    net = FakeNet(delay=lambda model: 0.02)
    run = make(net)
    run.submit(fake_song(0, 20), cancelled=cancel.is_set)
    run.submit(fake_song(1, 20))
    run.submit(broken())
    threading.Event().wait(0.15)
    cancel.set()
    results = run.wait()
    assert isinstance(results[0], Cancelled) and "cancelled" in str(results[0])
    assert isinstance(results[2], ValueError) and "field 'x'" in str(results[2])
    assert results[1][0].tolist() == [1]  # its rows checked at every step
    steps_of_0 = sum(0 in c for c in net.rows("dit"))
    assert 0 < steps_of_0 < 20 and sum(1 in c for c in net.rows("dit")) == 20


def test_requests_without_a_common_batch_axis_are_never_merged():
    a = NetworkRequest("m", "1", {"x": np.zeros((2, 3)), "y": np.zeros((1, 3))}, ["z"])
    b = NetworkRequest("m", "1", {"x": np.zeros((2, 3)), "y": np.zeros((1, 3))}, ["z"])
    c = NetworkRequest("m", "1", {"x": np.zeros((1, 3)), "y": np.zeros((1, 3))}, ["z"])
    d = NetworkRequest("m", "1", {"x": np.zeros((4, 3)), "y": np.zeros((4, 3))}, ["z"])
    assert group_key(a, 1) != group_key(b, 2)
    assert group_key(c, 1) == group_key(d, 2) and d.rows == 4


def test_row_caps_come_from_the_network_configs(tmp_path: Path):
    (tmp_path / "dit").mkdir()
    (tmp_path / "dit" / "config.pbtxt").write_text('name: "dit"\nbackend: "python"\nmax_batch_size: 16\n')
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.pbtxt").write_text('name: "lm"\nmax_batch_size: 0\n')
    caps = RowCaps(tmp_path, default=6)
    assert (caps("dit"), caps("lm"), caps("missing")) == (16, 1, 6)
    assert RowCaps(tmp_path, limit=8)("dit") == 8
    with pytest.raises(ValueError, match="row caps"):
        RowCaps(tmp_path, limit=0)


def aligning_song(song: int, steps: int, release: threading.Event, ran_on: list[str]) -> SongSteps:
    """``steps`` diffusion calls, then host work that blocks until ``release`` is set (the lyric alignment's place)."""
    for step in range(steps):
        x = np.full((1, 4), song, np.float32)
        x[:, 1] = step
        yield from network("dit", "1", {"x": x}, ["y"])

    def work() -> str:
        ran_on.append(threading.current_thread().name)
        assert release.wait(20), "the test never released the host work"
        return "aligned"

    value = yield from host_work(work)
    return np.array([song]), [song], {"work": value}


def test_host_work_runs_off_the_loop_while_other_songs_keep_stepping(make):
    """Song 0 reaches its host work and blocks there; song 1, submitted after, runs all its steps and finishes while
    song 0 is still in it (impossible if the work ran on the loop thread, which steps every song); then song 0 gets
    its work's value. The work's exception is raised into the song and fails that song only."""
    net = FakeNet()
    run = make(net)
    release, ran_on = threading.Event(), []
    run.submit(aligning_song(0, 1, release, ran_on))
    for _ in range(200):
        if ran_on:
            break
        threading.Event().wait(0.05)
    assert ran_on and ran_on[0].startswith("sampler-work"), ran_on
    finished = threading.Event()
    run.scheduler.submit(fake_song(1, 5), on_done=lambda r: finished.set(), on_error=lambda e: finished.set())
    assert finished.wait(20), "song 1 did not finish while song 0's host work was running"
    assert 0 not in run.results and net.rows("dit") == [[0]] + [[1]] * 5
    release.set()
    results = run.wait()
    assert results[0][2] == {"work": "aligned"}
    assert run.scheduler.stats.songs_done == 2

    def failing() -> SongSteps:
        yield from network("dit", "1", {"x": np.full((1, 4), 2, np.float32)}, ["y"])
        yield from host_work(lambda: 1 / 0)
        raise AssertionError("unreachable: the work's error is raised at the yield")

    run.submit(failing())
    run.submit(fake_song(3, 2))
    results = run.wait()
    assert isinstance(results[1], ZeroDivisionError) and results[2][0].tolist() == [3]


def test_drive_runs_host_work_inline():
    release, ran_on = threading.Event(), []
    release.set()
    audio, _, info = drive(aligning_song(4, 2, release, ran_on), FakeNet())
    assert info == {"work": "aligned"} and ran_on == [threading.current_thread().name]


def test_a_network_with_two_instances_gets_a_group_as_two_concurrent_calls(make):
    """``decode`` has 2 instances: 5 songs' one-row decodes (ready together: their ``dit`` call queued behind song 0's
    held one) go as two calls of 3 + 2 rows, both in flight at once (each holds until both have started); ``dit``
    (1 instance) keeps one call for the five."""
    both_started, lock, inside = threading.Event(), threading.Lock(), [0]

    class TwoInstances(FakeNet):
        def __call__(self, model, version, inputs, outputs):
            if model == "decode":
                with lock:
                    inside[0] += 1
                    if inside[0] == 2:
                        both_started.set()
                assert both_started.wait(10), "the second decode call never started beside the first"
            return super().__call__(model, version, inputs, outputs)

    def song(i: int, decode: bool = True) -> SongSteps:
        yield from network("dit", "1", {"x": np.full((1, 4), i, np.float32)}, ["y"])
        if decode:
            yield from network("decode", "1", {"x": np.full((1, 4), i, np.float32)}, ["y"], "decode")
        return np.array([i]), [i], {}

    net = TwoInstances(gate=True)
    scheduler = StepScheduler(net, lambda model: 16, instances=lambda model: 2 if model == "decode" else 1,
                              poll_seconds=0.02)
    try:
        results = Run(scheduler).behind_a_held_call(net, song(0, decode=False), *(song(i) for i in range(1, 6)))
    finally:
        scheduler.close()
    assert all(results[i][0].tolist() == [i] for i in range(6))
    assert net.rows("dit") == [[0], [1, 2, 3, 4, 5]]
    assert sorted(map(sorted, net.rows("decode"))) == [[1, 2, 3], [4, 5]]


def test_row_caps_read_the_instance_count(tmp_path: Path):
    (tmp_path / "vae_decoder").mkdir()
    (tmp_path / "vae_decoder" / "config.pbtxt").write_text(
        'name: "vae_decoder"\nmax_batch_size: 8\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n')
    caps = RowCaps(tmp_path)
    assert (caps("vae_decoder"), caps.instances("vae_decoder"), caps.instances("missing")) == (8, 2, 1)
