"""``tritone stems FILE --stems 2|4|6 --out DIR`` against the real stack: the orchestrator (``tritone serve
--triton-url`` in a child process) and the session's tritonserver serving the tiny repository."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from orchestrator.cli import main
from tests.orchestrator.support import served_orchestrator

pytestmark = pytest.mark.triton
USER, PASSWORD = "stems-user", "stems-pw-123"


@pytest.fixture(scope="module")
def service(triton: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_orchestrator(triton.grpc_url, tmp_path_factory.mktemp("stems-orchestrator"), USER, PASSWORD) as base:
        yield base


def test_stems_writes_each_stem_and_the_zip(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRITONE_PASSWORD", PASSWORD)
    rng = np.random.default_rng(5)
    song = tmp_path / "song.flac"
    sf.write(song, (0.3 * rng.standard_normal((44_100 * 2, 2))).astype(np.float32), 44_100)  # resampled to 48 kHz
    out = tmp_path / "stems"
    code = main(["stems", str(song), "--stems", "4", "--server", service, "--user", USER, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    names = ["drums.wav", "bass.wav", "other.wav", "vocals.wav"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "stems.zip"])
    for name in names:
        info = sf.info(out / name)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (48_000, 2, 96_000, "FLOAT")
        assert str(out / name) in printed
    assert zipfile.ZipFile(out / "stems.zip").namelist() == names


def test_stems_reports_the_field_the_server_rejects(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRITONE_PASSWORD", PASSWORD)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    assert main(["stems", str(text), "--server", service, "--user", USER, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "HTTP 422" in err and "file" in err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["stems", str(text), "--stems", "3"])
    assert main(["stems", str(tmp_path / "missing.wav"), "--server", service, "--user", USER]) == 2
    assert "no such file" in capsys.readouterr().err


def test_tracks_make_the_stems_with_the_acestep_method(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRITONE_PASSWORD", PASSWORD)
    rng = np.random.default_rng(6)
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * rng.standard_normal((48_000 * 10, 2))).astype(np.float32), 48_000)
    out = tmp_path / "tracks"
    argv = ["stems", str(song), "--tracks", "vocals,bass", "--steps", "2", "--server", service, "--user", USER]
    code = main([*argv, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "stems.zip", "vocals.wav"]
    assert sf.info(out / "vocals.wav").frames == 48_000 * 10
    assert main([*argv, "--stems", "4"]) == 2 and "--stems does not go with --tracks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stems", str(song), "--tracks", "vocals,cowbell"])
