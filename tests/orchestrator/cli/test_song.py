"""``tritone song``: its flags follow the API schema (only flags given are sent), and mistakes end in one readable
line."""

from __future__ import annotations

import pytest

from orchestrator.cli import build_parser, main
from orchestrator.cli.song import _song_request


def test_song_flags_follow_the_api_schema() -> None:
    args = build_parser().parse_args(
        [
            "song",
            "周末骑单车去看海",
            "--format",
            "mp3",
            "--track-classes",
            "drums",
            "bass",
            "--no-generate-cover",
            "--bpm",
            "120",
            "--guidance-scale",
            "5.5",
            "--key-scale",
            "A minor",
            "--api-key",
            "k",
        ]
    )
    assert _song_request(args) == {
        "theme": "周末骑单车去看海",
        "audio_format": "mp3",
        "track_classes": ["drums", "bass"],
        "generate_cover": False,
        "bpm": 120,
        "guidance_scale": 5.5,
        "key_scale": "A minor",
    }
    # Flags not given are not sent: the server's defaults apply.
    assert _song_request(build_parser().parse_args(["song", "x"])) == {"theme": "x"}


@pytest.mark.parametrize(
    "argv",
    [["song", "x", "--vocal-mode", "shout"], ["song", "x", "--bpm", "fast"], ["song", "x", "--track-classes", "kazoo"]],
)
def test_song_flags_reject_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "invalid" in capsys.readouterr().err


def test_song_without_credentials_says_how(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TRITONE_USER", "TRITONE_API_KEY", "TRITONE_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert main(["song", "x", "--server", "http://127.0.0.1:9"]) == 2
    assert "--user NAME" in capsys.readouterr().err


def test_song_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["song", "x", "--server", "http://127.0.0.1:9", "--api-key", "k"]) == 2
    assert "cannot reach the song service at http://127.0.0.1:9" in capsys.readouterr().err
