"""callback_url webhooks: a real HTTP receiver on a free port, HMAC-verified, retried; private hosts refused."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.services.webhooks import CallbackRefusedError, WebhookSender, sign, verify_signature
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import hooked_song, login, make_settings, running_app, wait_for


class Receiver:
    """A local HTTP server that records webhook deliveries and fails the first ``fail_first`` of them with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((dict(self.headers), body))
                status = 500 if len(receiver.deliveries) <= receiver.fail_first else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_webhooks_signed_in_order_and_retried(tmp_path) -> None:
    settings = make_settings(
        tmp_path, allow_private_callbacks=True, webhook_backoff_s=0.05, webhook_secrets={"alice": "hook-secret"}
    )
    with Receiver(fail_first=2) as receiver:
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            headers = await login(client)
            intent = await hooked_song(client, headers, receiver.url)

            def final_seen() -> bool:
                return any(json.loads(b).get("event") == "done" for _, b in receiver.deliveries)

            async def probe() -> bool:
                return final_seen()

            await wait_for(probe, what="the final webhook")
            final = json.loads(receiver.deliveries[-1][1])
            # The final callback carries the result as GET /v1/song/status shows it: no poll needed.
            result = final["result"]
            assert result["intent_id"] == intent and result["status"] == "succeeded"
            assert result["lyrics"].startswith("[Verse 1]") and result["title"]
            assert result["metadata"]["duration"] == 10 and result["metadata"]["bpm"]
            [item] = result["items"]
            assert item["index"] == 0 and item["format"] == "flac" and item["duration"] == 10.0
            audio = await client.get(item["audio_url"])  # a signed link: no credentials needed
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
    accepted = []
    for headers_, body in receiver.deliveries:
        assert verify_signature("hook-secret", headers_["X-Tritone-Signature"], body)
        assert not verify_signature("other-secret", headers_["X-Tritone-Signature"], body)
        accepted.append((headers_["X-Tritone-Attempt"], json.loads(body)))
    # the first delivery failed twice with 500 and was retried with the same payload
    assert [a for a, _ in accepted[:3]] == ["1", "2", "3"] and accepted[0][1] == accepted[2][1]
    payloads = [p for _, p in accepted[2:]]
    events = [(p["event"], p.get("stage"), p["status"]) for p in payloads]
    assert events[0] == ("status", None, "queued")
    assert [e[1] for e in events if e[0] == "stage"] == ["lyrics", "metadata", "audio", "post"]
    assert events[-1] == ("done", None, "succeeded") and all(p["job_id"] == intent for p in payloads)


async def test_acestep_callback_carries_the_result_with_absolute_links(tmp_path) -> None:
    settings = make_settings(tmp_path, allow_private_callbacks=True, public_url="https://music.example.com/")
    with Receiver() as receiver:
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            headers = await login(client)
            body = {
                "caption": "lofi beat",
                "lyrics": "[Verse]\nhello there",
                "audio_duration": 10,
                "inference_steps": 2,
                "audio_format": "wav",
                "bpm": 90,
                "key_scale": "A minor",
                "time_signature": "4",
                "callback_url": receiver.url,
            }
            job_id = (await client.post("/v1/music/generate", json=body, headers=headers)).json()["job_id"]

            async def final() -> dict | None:
                done = [json.loads(b) for _, b in receiver.deliveries if json.loads(b)["event"] == "done"]
                return done[0] if done else None

            payload = await wait_for(final, what="the final webhook")
            result = payload["result"]
            assert payload["job_id"] == job_id and payload["status"] == "succeeded"
            assert result["lyrics"] == "[Verse]\nhello there" and result["caption"] == "lofi beat"
            assert result["metas"]["bpm"] == 90 and result["keyscale"] == "A minor" and result["metadata"]["bpm"] == 90
            [item] = result["items"]
            assert item["format"] == "wav" and item["duration"] == 10.0 and isinstance(item["seed"], int)
            prefix = "https://music.example.com/v1/files/"
            assert item["audio_url"].startswith(prefix) and result["audio_paths"][0].startswith("https://music.example")
            audio = await client.get(item["audio_url"].removeprefix("https://music.example.com"))
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"


async def test_private_callback_hosts_refused_by_default(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        for url in (
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data",
        ):
            r = await client.post("/v1/song/create", json={"theme": "x", "callback_url": url}, headers=headers)
            assert r.status_code == 422, (url, r.text)
            error = r.json()["error"]
            assert error["field"] == "callback_url" and "TRITONE_ALLOW_PRIVATE_CALLBACKS" in error["message"]
        r = await client.post(
            "/v1/song/create", json={"theme": "x", "callback_url": "ftp://example.com/x"}, headers=headers
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "callback_url"


async def test_check_url_resolves_before_each_delivery(tmp_path) -> None:
    sender = WebhookSender(make_settings(tmp_path))
    with pytest.raises(CallbackRefusedError, match="does not resolve"):
        await sender.check_url("http://no-such-host.invalid/x")
    await sender.check_url("https://93.184.215.14/hook")  # a public address literal: accepted (no DNS needed)
    with pytest.raises(CallbackRefusedError, match="private"):
        await sender.check_url("http://[::ffff:192.168.1.1]/x")  # IPv4-mapped private address
    with pytest.raises(CallbackRefusedError, match="private"):
        await sender.check_url("http://100.64.0.1/x")  # carrier-grade NAT


def test_signature_format() -> None:
    header = sign("k", 1700000000, b"{}")
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert not verify_signature("k", header, b"{}")  # too old
    fresh = sign("k", int(time.time()), b"{}")
    assert verify_signature("k", fresh, b"{}") and not verify_signature("k", fresh, b"{ }")
