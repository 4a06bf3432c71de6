"""The ``tritone`` user commands: song flags follow the API schema, the event-stream parser and terminal view,
and ``tritone models`` rolling versions of a real model on the real tritonserver."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import build_parser, main
from orchestrator.commands import _song_request
from orchestrator.song_client import SongEvent, TerminalView, _parse_sse, safe_stem


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


def test_sse_parser() -> None:
    lines = [
        ": keep-alive",
        "event: lyrics",
        'data: {"text": "[Verse]\\n周末"}',
        "",
        "event: progress",
        'data: {"stage": "diffusion",',
        'data:  "step": 3, "total": 8}',
        "",
        'data: {"kind": "done"}',
        "",
    ]
    events = list(_parse_sse(iter(lines)))
    assert [e.kind for e in events] == ["lyrics", "progress", "done"]
    assert events[0].data["text"] == "[Verse]\n周末"
    assert events[1].data == {"stage": "diffusion", "step": 3, "total": 8}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_view_streams_lyrics_once_and_draws_a_bar() -> None:
    out, err = io.StringIO(), _Tty()
    view = TerminalView(out, err)
    for event in [
        SongEvent("lyrics", {"text": "[Verse 1]\n"}),
        SongEvent("lyrics", {"text": "[Verse 1]\n周末的风"}),
        SongEvent("status", {"status": "lyrics_pending", "lyrics": "[Verse 1]\n周末的风"}),  # a poll repeats it
        SongEvent("progress", {"stage": "diffusion", "step": 4, "total": 8}),
        SongEvent("progress", {"stage": "diffusion", "step": 8, "total": 8}),
        SongEvent("status", {"status": "succeeded"}),
    ]:
        view(event)
    assert out.getvalue() == "[Verse 1]\n周末的风\n"
    assert "[###############...............] 4/8  50%" in err.getvalue()
    assert err.getvalue().rstrip().endswith("8/8 100%")
    # The final text repeating the stream with different trailing whitespace is not printed again.
    view(SongEvent("lyrics", {"text": "[Verse 1]\n周末的风\n", "final": True}))
    assert out.getvalue() == "[Verse 1]\n周末的风\n"
    # A rewritten text (final lyrics differ from the draft) is shown whole, not glued to the draft.
    view(SongEvent("lyrics", {"text": "[Chorus]\n看海", "final": True}))
    assert out.getvalue().endswith("── lyrics ──\n[Chorus]\n看海")


def test_safe_stem() -> None:
    assert safe_stem("周末/骑单车: 去看海?") == "周末_骑单车_去看海"
    assert safe_stem("  ..  ") == "song"


# ---------------------------------------------------------------------------------------------- tritone models
def _triton_missing() -> str | None:
    from model_repository.server import find_triton

    try:
        find_triton()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.mark.triton
@pytest.mark.skipif(_triton_missing() is not None, reason=f"no tritonserver: {_triton_missing()}")
def test_models_roll_a_version_in_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tritonclient.grpc as grpcclient

    from model_repository.server import TritonServer
    from tests.orchestrator.toy_models import ECHO, write_echo_repository

    repo = write_echo_repository(tmp_path / "repo")

    def served(client: grpcclient.InferenceServerClient, version: str) -> float:
        x = grpcclient.InferInput("x", [1], "FP32")
        x.set_data_from_numpy(np.array([0.5], np.float32))
        return float(client.infer(ECHO, [x], model_version=version).as_numpy("y")[0])

    def models(*argv: str) -> tuple[int, str, str]:
        code = main(["models", "--server", srv.grpc_url, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    with TritonServer(repo, log_path=tmp_path / "triton.log", load_models=[ECHO]) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        code, out, _ = models("list", "--json")
        assert code == 0
        assert {(r["version"], r["state"]) for r in json.loads(out) if r["name"] == ECHO} == {("1", "READY")}

        # Roll version 2 in beside 1: both answer.
        code, out, _ = models("load", ECHO, "--version", "2")
        assert code == 0 and "READY" in out
        assert (served(client, "1"), served(client, "2")) == (1.5, 2.5)

        # Roll version 1 out: 2 keeps serving, 1 is gone.
        code, out, _ = models("unload", ECHO, "--version", "1")
        assert code == 0
        assert served(client, "2") == 2.5
        assert not client.is_model_ready(ECHO, "1")

        # Mistakes are one readable line each.
        code, _, err = models("unload", ECHO, "--version", "2")
        assert code == 2 and "no versions left for 'echo'" in err
        code, _, err = models("unload", ECHO, "--version", "7")
        assert code == 2 and "does not serve version(s) [7]; it serves [2]" in err
        code, _, err = models("load", "nope")
        assert code == 2 and "no model 'nope' in the repository; models: echo" in err
        code, _, err = models("load", ECHO, "--version", "9")
        assert code == 2 and "echo version(s) [9] did not become ready" in err and "echo serves [2]" in err, err
        assert served(client, "2") == 2.5  # a failed load leaves the serving version alone

        # Whole-model unload; then load a specific version of an unloaded model from its config.pbtxt.
        assert models("unload", ECHO)[0] == 0
        assert not client.is_model_ready(ECHO)
        code, _, err = models("load", ECHO, "--version", "2")
        assert code == 2 and "--repository" in err
        assert models("--repository", str(repo), "load", ECHO, "--version", "2", "--exclusive")[0] == 0
        assert served(client, "2") == 2.5 and not client.is_model_ready(ECHO, "1")
        code, out, _ = models("list")
        assert "echo" in out and "READY" in out
        client.close()
