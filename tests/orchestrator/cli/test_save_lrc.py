"""``tritone song`` saves each timed item's ``.lrc`` beside its audio (same stem)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.client import save_results


class _Files:
    """A stand-in for SongClient.download: writes the URL as the file's content."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def download(self, url: str, path: Path) -> Path:
        self.urls.append(url)
        path.write_text(url, encoding="utf-8")
        return path


def test_timed_items_get_their_lrc_and_untimed_ones_none(tmp_path) -> None:
    final = {"title": "Sea", "lyrics": "la", "items": [
        {"index": 0, "audio_url": "/a0", "format": "mp3", "lrc_url": "/l0", "lrc": "[00:01.00]la"},
        {"index": 1, "audio_url": "/a1", "format": "mp3", "lrc_url": None},
    ]}
    files = _Files()
    written = save_results(files, final, tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / "Sea-1.lrc").read_text() == "/l0" and not (tmp_path / "Sea-2.lrc").exists()
    assert tmp_path / "Sea-1.lrc" in written and files.urls == ["/a0", "/l0", "/a1"]
