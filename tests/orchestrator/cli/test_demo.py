"""``tritone demo`` — the README's first command — end to end: tiny repository → tritonserver and the orchestrator on
free ports → a song with streamed lyrics and a progress bar → files on disk → both servers stopped."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[3]
# Third-party noise that must not reach a user's terminal (issue 16: the demo prints its own lines only).
STRAY = re.compile(
    r"FutureWarning|UserWarning|DeprecationWarning|torchvision|warnings\.warn"
    r"|Writing model shards|Loading weights|it/s\]"
)


def assert_clean(output: str) -> None:
    stray = [line for line in output.splitlines() if STRAY.search(line)]
    assert not stray, "third-party noise in the demo's output:\n" + "\n".join(stray[:20])


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_demo_makes_a_song_and_stops_everything(tiny_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "demo",
        "周末骑单车去看海",
        "--repository",
        str(tiny_repository),
        "--out",
        str(out),
        "--duration",
        "10",
        "--steps",
        "4",
        "--format",
        "flac",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"

    # Lyrics were streamed to the terminal between the theme line and the file list.
    streamed = result.stdout.split("主题 theme: 周末骑单车去看海", 1)[1].split("\n♪", 1)[0]
    assert streamed.strip(), result.stdout
    # A progress bar for the audio (stderr is a pipe here: one line per stage and quarter).
    assert re.search(r"diffusion\s+\[#+\.*\] \d+/4", result.stderr), result.stderr
    assert "servers stopped" in result.stdout
    assert_clean(result.stdout + result.stderr)
    # The last lines say where the files are and how to open the web page.
    assert str(out.resolve()) in result.stdout.splitlines()[-2] and "web page:" in result.stdout.splitlines()[-1]

    audio = sorted(out.glob("*-1.flac"))
    assert len(audio) == 1, sorted(p.name for p in out.iterdir())
    info = sf.info(audio[0])
    assert (info.samplerate, info.channels, info.subtype) == (48_000, 2, "PCM_24")
    assert abs(info.duration - 10.0) < 0.05
    wave, _ = sf.read(audio[0])
    assert np.abs(wave).max() <= 1.0 and np.abs(wave).max() > 0.1  # peak-normalised, not silence
    with Image.open(out / "cover.png") as cover:
        assert cover.format == "PNG" and cover.size == (1024, 1024)
    lyrics = (out / "lyrics.txt").read_text("utf-8")
    assert lyrics.strip()
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["status"] == "succeeded" and meta["items"][0]["file"] == audio[0].name
    assert meta["metadata"]["duration"] == 10

    # Nothing left running: neither the Triton nor the orchestrator port answers any more.
    triton_match = re.search(r"tritonserver ready: grpc (\S+),", result.stdout)
    orchestrator_match = re.search(r"orchestrator ready: http://(\S+?)/", result.stdout)
    assert triton_match and orchestrator_match, result.stdout
    triton_grpc, orchestrator = triton_match.group(1), orchestrator_match.group(1)
    assert not _listening(triton_grpc) and not _listening(orchestrator)


@pytest.mark.slow  # a full tiny export (~2 min on 2 cores); the demo itself runs in the default suite above
def test_first_demo_exports_and_prints_only_its_own_lines(tmp_path: Path) -> None:
    """A fresh clone's first `tritone demo` (what `make demo` runs): the export runs too, and the output holds the
    demo's and the export's own progress lines only — no library warnings or progress bars."""
    out, repository = tmp_path / "demo", tmp_path / "repository"
    argv = [sys.executable, "-m", "orchestrator.cli", "demo", "sea", "--repository", str(repository), "--out", str(out)]
    argv += ["--duration", "10", "--steps", "2", "--format", "mp3"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1500, cwd=ROOT, check=False)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert "exporting the tiny presets" in result.stderr and "repository ready at" in result.stdout
    assert_clean(result.stdout + result.stderr)
    assert sorted(out.glob("*-1.mp3"))
