"""``tritone song`` and ``tritone serve`` against the real stack: the orchestrator (``tritone serve --triton-url`` in a
child process) and the session's tritonserver serving the tiny repository."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from orchestrator.cli import main
from tests.orchestrator.support import served_orchestrator

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[3]
USER, PASSWORD = "cli-user", "cli-pw-123"


@pytest.fixture(scope="module")
def service(triton: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_orchestrator(triton.grpc_url, tmp_path_factory.mktemp("cli-orchestrator"), USER, PASSWORD) as base:
        yield base


@pytest.mark.parametrize("follow", ["events", "polling"])
def test_song_streams_lyrics_and_downloads(
    service: str, follow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRITONE_PASSWORD", PASSWORD)
    argv = [
        "song",
        "风把白衬衫吹起来",
        "--server",
        service,
        "--user",
        USER,
        "--out",
        str(tmp_path),
        "--duration",
        "10",
        "--inference-steps",
        "3",
        "--format",
        "wav",
        "--seed",
        "11",
    ]
    if follow == "polling":
        argv += ["--no-events", "--no-generate-cover"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    wav = sorted(tmp_path.glob("*-1.wav"))
    assert len(wav) == 1
    info = sf.info(wav[0])
    assert (info.samplerate, info.channels, info.subtype) == (48_000, 2, "PCM_16") and abs(info.duration - 10) < 0.05
    lyrics = (tmp_path / "lyrics.txt").read_text("utf-8")
    meta = json.loads((tmp_path / "metadata.json").read_text("utf-8"))
    assert meta["items"][0]["seed"] == 11 and meta["items"][0]["file"] == wav[0].name
    # What was streamed to the terminal is the song's lyrics.
    assert meta["lyrics"] and meta["lyrics"].strip().splitlines()[0] in out
    assert meta["lyrics"].strip() in lyrics
    assert f"{tmp_path}" in out
    assert (tmp_path / "cover.png").exists() == (follow == "events")


def test_song_reports_the_field_the_server_rejects(
    service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TRITONE_PASSWORD", PASSWORD)
    code = main(["song", "x", "--server", service, "--user", USER, "--duration", "5", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 422" in err and "duration" in err
    monkeypatch.setenv("TRITONE_PASSWORD", "wrong")
    assert main(["song", "x", "--server", service, "--user", USER]) == 2
    assert "HTTP 401" in capsys.readouterr().err


SERVE_KEY = "serve-test-key"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_starts_triton_and_the_orchestrator_and_stops_both(tmp_path: Path, stop: signal.Signals) -> None:
    from model_repository.launcher.server import free_port
    from tests.orchestrator.toy_models import write_echo_repository

    repo = write_echo_repository(tmp_path / "repo")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "serve",
                "--repository",
                str(repo),
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--triton-log",
                str(tmp_path / "triton.log"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            # /health names the Triton servers only to an authenticated caller.
            env=os.environ | {"TRITONE_API_KEYS": json.dumps({SERVE_KEY: "ops"})},
        )
    try:
        deadline = time.monotonic() + 120
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-API-Key": SERVE_KEY}, timeout=2)
                health = response.json()["data"]
                if health["triton"] and health["triton"][0]["healthy"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert health.get("triton") and health["triton"][0]["healthy"], health
        grpc = health["triton"][0]["url"]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.count("Song Generation") >= 1  # the web page
    finally:
        proc.send_signal(stop)
        code = proc.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "tritonserver stopped" in text
    for address in (f"127.0.0.1:{port}", grpc):
        host, p = address.rsplit(":", 1)
        with socket.socket() as s:
            assert s.connect_ex((host, int(p))) != 0, f"{address} still listening"
