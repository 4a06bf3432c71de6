"""A small synchronous client for the song API, shared by ``tritone song`` and ``tritone demo``.

It does what any HTTP client of the service does: log in (or use an API key), ``POST /v1/song/create``, follow the
job on the server-sent event stream ``GET /v1/song/events`` (falling back to polling ``GET /v1/song/status`` when
the stream is unavailable), then download the audio items and the cover. Terminal rendering (streamed lyrics, a
progress bar) lives here too, so both commands look the same.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import httpx

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
SONG_STATUSES = frozenset({"lyrics_pending", "lyrics_ready", "audio_pending"}) | TERMINAL_STATUSES
# Event kinds after which the job's final state can be fetched.
_FINAL_EVENTS = frozenset({"done", "failed", "cancelled", "end"})


class ApiCallError(RuntimeError):
    """The service answered with an error envelope ``{code, error: {message, field?}}`` (or could not be reached)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        where = f" (field {field!r})" if field and field not in message else ""
        super().__init__(f"HTTP {status}: {message}{where}" if status else message)


def _error_from(response: httpx.Response) -> ApiCallError:
    message = f"{response.reason_phrase or 'error'}"
    field_name: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
            field_name = error.get("field")
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
        elif isinstance(body.get("detail"), list) and body["detail"]:
            first = body["detail"][0]
            field_name = ".".join(str(p) for p in first.get("loc", []) if p != "body") or None
            message = str(first.get("msg", message))
    elif response.text:
        message = response.text.strip()[:300]
    return ApiCallError(response.status_code, message, field_name)


@dataclass
class SongEvent:
    """One update about a job, from the event stream or a status poll."""

    kind: str  # lyrics | delta | progress | status | done | failed | ...
    data: dict[str, Any] = field(default_factory=dict)


class SongClient:
    """Song API calls with one auth method: a bearer token (``token`` or :meth:`login`) or an ``X-API-Key``."""

    def __init__(
        self, base_url: str, *, token: str | None = None, api_key: str | None = None, timeout_s: float = 30.0
    ) -> None:
        if not re.match(r"^https?://", base_url):
            base_url = f"http://{base_url}"
        self.base_url = base_url.rstrip("/") + "/"
        self.token = token
        self.api_key = api_key
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SongClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ basics
    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/")) if not re.match(r"^https?://", path) else path

    def _headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.api_key:
            return {"X-API-Key": self.api_key}
        return {}

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, self.url(path), headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise ApiCallError(0, f"cannot reach the song service at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        body = response.json()
        return body if isinstance(body, dict) else {"data": body}

    def login(self, username: str, password: str) -> str:
        body = self._request("POST", "/auth/login", json={"username": username, "password": password})
        payload = body.get("data") if isinstance(body.get("data"), dict) else body
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not token:
            raise ApiCallError(200, f"POST /auth/login answered without an access_token: {body}")
        self.token = str(token)
        return self.token

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/song/create", json=request)["data"])

    def status(self, intent_id: str) -> dict[str, Any]:
        return dict(self._request("GET", "/v1/song/status", params={"intent_id": intent_id})["data"])

    def stems(
        self, path: Path, stems: int, *, tracks: list[str] | None = None, steps: int | None = None
    ) -> dict[str, Any]:
        """``POST /v1/stems`` with ``path`` uploaded: ``{job_id, status_url, ...}``. ``tracks``: ACE-Step's method
        (one stem per track class, ``steps`` DiT steps) instead of the stem set ``stems``."""
        data = {"stems": str(stems)}
        if tracks:
            data = {"method": "acestep", "tracks": ",".join(tracks)}
            if steps:
                data["inference_steps"] = str(steps)
        with path.open("rb") as handle:
            return self._request("POST", "/v1/stems", data=data, files={"file": (path.name, handle)})

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    # ------------------------------------------------------------------------------------------------ events
    def events(self, intent_id: str, *, read_timeout_s: float = 120.0) -> Iterator[SongEvent]:
        """Server-sent events for a job. Raises :class:`ApiCallError` when the stream cannot be opened."""
        timeout = httpx.Timeout(30.0, read=read_timeout_s)
        headers = {**self._headers(), "Accept": "text/event-stream"}
        try:
            with self._http.stream(
                "GET", self.url("/v1/song/events"), params={"intent_id": intent_id}, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                yield from _parse_sse(response.iter_lines())
        except httpx.HTTPError as exc:
            raise ApiCallError(0, f"event stream interrupted: {exc}") from exc

    def follow(
        self,
        intent_id: str,
        on_event: Callable[[SongEvent], None],
        *,
        poll_interval_s: float = 2.0,
        timeout_s: float = 3600.0,
        use_events: bool = True,
    ) -> dict[str, Any]:
        """Report every update to ``on_event`` until the job ends; return its final status object."""
        deadline = time.monotonic() + timeout_s
        if use_events:
            try:
                for event in self.events(intent_id):
                    on_event(event)
                    status = event.data.get("status")
                    if event.kind in _FINAL_EVENTS or status in TERMINAL_STATUSES:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"song {intent_id} did not finish within {timeout_s:g} s")
            except ApiCallError as exc:
                if exc.status in (401, 403):
                    raise
                logger.info("event stream unavailable (%s); polling /v1/song/status instead", exc)
        # Poll until terminal (right away after a final event; the status row may trail the event by a moment).
        while True:
            data = self.status(intent_id)
            on_event(SongEvent("status", data))
            if data.get("status") in TERMINAL_STATUSES:
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"song {intent_id} did not finish within {timeout_s:g} s")
            time.sleep(poll_interval_s)

    # ------------------------------------------------------------------------------------------------ files
    def download(self, url: str, path: Path) -> Path:
        """Fetch one file (audio item or cover) to ``path``, written whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        try:
            with self._http.stream("GET", self.url(url), headers=self._headers()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                with tmp.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
            tmp.replace(path)
        except httpx.HTTPError as exc:
            raise ApiCallError(0, f"download of {url} failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _parse_sse(lines: Iterator[str]) -> Iterator[SongEvent]:
    """Minimal text/event-stream parser: ``event:`` / ``data:`` fields, blank line ends an event."""
    kind = "message"
    data_lines: list[str] = []
    for line in lines:
        if line == "":
            if data_lines:
                yield _make_event(kind, "\n".join(data_lines))
            kind, data_lines = "message", []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value or "message"
        elif name == "data":
            data_lines.append(value)
    if data_lines:
        yield _make_event(kind, "\n".join(data_lines))


def _make_event(kind: str, raw: str) -> SongEvent:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"text": raw}
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and set(data) <= {"kind", "type", "data", "id"}:
        kind = str(data.get("kind") or data.get("type") or kind)
        data = data["data"]
    if not isinstance(data, dict):
        data = {"value": data}
    return SongEvent(str(data.get("kind") or kind), data)


# ----------------------------------------------------------------------------------------------------- terminal
class TerminalView:
    """Streams lyrics to ``out`` as they grow and draws a progress bar for the audio on ``err``."""

    BAR_WIDTH = 30

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lyrics = ""
        self.title: str | None = None
        self.status: str | None = None
        self._bar_shown = False
        self._last_bar: tuple[str, int, int] | None = None
        self._tty = bool(getattr(self.err, "isatty", lambda: False)())

    def __call__(self, event: SongEvent) -> None:
        data = event.data
        full = data.get("lyrics_so_far", data.get("lyrics"))
        if full is None and event.kind == "lyrics":
            full = data.get("text")
        if isinstance(full, str):
            self._lyrics(full)
        elif event.kind == "delta" and isinstance(data.get("text"), str):
            self._lyrics(self.lyrics + data["text"])
        if data.get("title") and data["title"] != self.title:
            self.title = str(data["title"])
        progress = data.get("progress") if isinstance(data.get("progress"), dict) else None
        if progress is None and event.kind == "progress":
            progress = data
        if progress and int(progress.get("total") or 0) > 0:
            self._bar(str(progress.get("stage") or "audio"), int(progress.get("step") or 0), int(progress["total"]))
        status = data.get("status")
        if status in SONG_STATUSES and status != self.status:
            self.status = status
            if status in TERMINAL_STATUSES:
                self.finish_bar()

    def _lyrics(self, text: str) -> None:
        shown = self.lyrics
        if text == shown or shown.startswith(text) or text.rstrip() == shown.rstrip():
            return  # nothing new (a repeat, an older snapshot, or only trailing whitespace differs)
        self.finish_bar()
        if text.startswith(shown):
            self.out.write(text[len(shown) :])
        elif shown and text.startswith(shown.rstrip()):
            self.out.write(
                text[len(shown.rstrip()) :].lstrip(" \t") if shown.endswith("\n") else text[len(shown.rstrip()) :]
            )
        else:  # rewritten (e.g. the final lyrics after a draft): show the new version whole
            self.out.write(("\n" if shown else "") + "── lyrics ──\n" + text)
        self.out.flush()
        self.lyrics = text

    def _bar(self, stage: str, step: int, total: int) -> None:
        if self._last_bar == (stage, step, total):
            return
        if not self._bar_shown and self.lyrics and not self.lyrics.endswith("\n"):
            self.out.write("\n")
            self.out.flush()
        fraction = min(1.0, step / total)
        filled = round(fraction * self.BAR_WIDTH)
        line = f"{stage:<10} [{'#' * filled}{'.' * (self.BAR_WIDTH - filled)}] {step}/{total} {fraction:4.0%}"
        if self._tty:
            self.err.write("\r" + line)
        else:
            # Logs and pipes: a line per stage change and per quarter, not one per step.
            previous = self._last_bar
            quarter = int(fraction * 4)
            if previous is None or previous[0] != stage or int(previous[1] / previous[2] * 4) != quarter:
                self.err.write(line + "\n")
        self.err.flush()
        self._bar_shown = True
        self._last_bar = (stage, step, total)

    def finish_bar(self) -> None:
        if self._bar_shown and self._tty:
            self.err.write("\n")
            self.err.flush()
        self._bar_shown = False


# ----------------------------------------------------------------------------------------------------- results
_UNSAFE = re.compile(r"[\\/:*?\"<>|\s\x00-\x1f]+")


def safe_stem(text: str | None, fallback: str = "song") -> str:
    """A file-name stem from a song title (keeps CJK, drops path separators and control characters)."""
    stem = _UNSAFE.sub("_", (text or "").strip()).strip("._")[:60]
    return stem or fallback


def save_results(client: SongClient, final: dict[str, Any], out_dir: Path) -> list[Path]:
    """Download every audio item (with its ``.lrc`` when the song was timed) and the cover into ``out_dir``; write
    ``lyrics.txt`` and ``metadata.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    title = final.get("title") or (final.get("metadata") or {}).get("title")
    stem = safe_stem(title)
    written: list[Path] = []
    files: list[dict[str, Any]] = []
    for item in final.get("items") or []:
        fmt = str(item.get("format") or "flac")
        suffix = "wav" if fmt == "wav32" else fmt
        target = out_dir / f"{stem}-{int(item.get('index', len(files))) + 1}.{suffix}"
        client.download(str(item["audio_url"]), target)
        written.append(target)
        files.append({**item, "file": target.name})
        if item.get("lrc_url"):  # lyric timing (align_lyrics): the .lrc beside its audio, same stem
            written.append(client.download(str(item["lrc_url"]), target.with_suffix(".lrc")))
    if final.get("cover_url"):
        cover = client.download(str(final["cover_url"]), out_dir / "cover.png")
        written.append(cover)
    lyrics = out_dir / "lyrics.txt"
    lyrics.write_text(((f"{title}\n\n" if title else "") + (final.get("lyrics") or "")).rstrip() + "\n", "utf-8")
    written.append(lyrics)
    meta = out_dir / "metadata.json"
    record = {k: v for k, v in final.items() if k not in ("items",)}
    record["items"] = files
    meta.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", "utf-8")
    written.append(meta)
    return written
