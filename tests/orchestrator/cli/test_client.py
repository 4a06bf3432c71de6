"""The song API client ``tritone song`` and ``tritone demo`` share: the event-stream parser, the terminal view, file
names."""

from __future__ import annotations

import io

from orchestrator.cli.client import SongEvent, TerminalView, _parse_sse, safe_stem


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
