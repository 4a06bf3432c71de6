"""Webhooks that cannot be lost or aimed inward (issue 14): the durable outbox delivers after an orchestrator
restart (at-least-once, the same idempotency key), each attempt connects to the address that was validated, and
every IPv6 form that embeds or reaches a private IPv4 address is refused."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from orchestrator.db import Job, WebhookOutbox
from orchestrator.services.netguard import is_public
from orchestrator.services.outbox import terminal_event_id
from orchestrator.services.webhooks import CallbackRefusedError, WebhookSender, verify_signature
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import hooked_song, login, make_settings, running_app, wait_for


class Receiver:
    """Records every delivery; answers 503 while ``down`` is set, 204 otherwise."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.down = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((dict(self.headers), body))
                self.send_response(503 if receiver.down.is_set() else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_outbox_delivers_after_a_restart_with_the_same_idempotency_key(tmp_path, db_url: str) -> None:
    receiver = Receiver()
    receiver.down.set()
    settings = make_settings(
        tmp_path,
        db_url,
        allow_private_callbacks=True,
        webhook_backoff_s=0.05,
        webhook_max_attempts=20,
        outbox_poll_s=0.05,
    )
    try:
        async with running_app(settings, StageRunnerDouble()) as (app, client):
            headers = await login(client)
            intent = await hooked_song(client, headers, receiver.url)

            async def retried() -> bool:
                return len(receiver.deliveries) >= 2

            await wait_for(retried, what="the first webhook to be attempted twice")

            async def stored() -> list[WebhookOutbox] | None:
                async with app.state.ctx.sessions() as session:
                    found = (await session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id))).all()
                return list(found) if found and found[-1].event == "done" else None

            rows = await wait_for(stored, what="the final event in the outbox")
        # the orchestrator is gone; its outbox holds every event (the final one too), none delivered
        assert [r.event for r in rows][0] == "status" and rows[-1].event == "done"
        assert all(r.status == "pending" for r in rows)
        keys_before = {h["Idempotency-Key"] for h, _ in receiver.deliveries}
        assert keys_before == {rows[0].event_id}, "every retry of an event carries its one idempotency key"
        receiver.down.clear()
        async with running_app(settings, StageRunnerDouble()) as (app, _client):

            async def all_delivered() -> bool:
                async with app.state.ctx.sessions() as session:
                    rows = (await session.scalars(select(WebhookOutbox))).all()
                return bool(rows) and all(row.status == "delivered" for row in rows)

            await wait_for(all_delivered, what="the outbox to drain after the restart")
            secret = app.state.ctx.webhooks.secret_for("alice")
    finally:
        receiver.close()
    accepted: dict[str, dict[str, Any]] = {}
    for headers_, body in receiver.deliveries:
        assert verify_signature(secret, headers_["X-Tritone-Signature"], body)  # alice's own secret
        accepted[headers_["Idempotency-Key"]] = json.loads(body)
    assert set(accepted) == {r.event_id for r in rows}, "every stored event was delivered under its own key"
    assert accepted[rows[0].event_id]["status"] == "queued"  # the event tried before the restart, same key after
    done = [p for p in accepted.values() if p["event"] == "done"]
    assert len(done) == 1 and done[0]["job_id"] == intent and done[0]["status"] == "succeeded"
    # in order per job: the last delivery is the final one
    assert json.loads(receiver.deliveries[-1][1])["event"] == "done"


async def test_delivery_connects_to_the_validated_address(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS answers 127.0.0.1 at validation, then an unreachable address (rebinding): the POST still goes to the
    address that was checked, because the connection never resolves the name again."""
    receiver = Receiver()
    answers = iter(["127.0.0.1"] + ["10.255.255.1"] * 20)
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    async def loop_getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "rebind.test"
        ip = next(answers)
        resolved.append(ip)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    def system_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            raise AssertionError("the connection resolved the callback host a second time")
        return real_getaddrinfo(host, *args, **kwargs)

    settings = make_settings(tmp_path, allow_private_callbacks=True)
    sender = WebhookSender(settings)
    await sender.start()
    try:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", loop_getaddrinfo)
        monkeypatch.setattr(socket, "getaddrinfo", system_getaddrinfo)
        outcome, error = await sender.attempt(
            f"http://rebind.test:{receiver.port}/hook", "status", b"{}", "evt-1", 1, "alice"
        )
    finally:
        await sender.close()
        receiver.close()
    assert outcome == "delivered", error
    assert resolved == ["127.0.0.1"]
    assert sender.backend.connected[-1] == ("rebind.test", "127.0.0.1", receiver.port)
    assert receiver.deliveries[0][0]["Host"].startswith("rebind.test")


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:127.0.0.1",
        "::10.0.0.1",  # IPv4-compatible
        "::127.0.0.1",
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "2002:7f00:0001::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "fec0::1",  # site-local
        "fd00::1",  # unique local
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::808:808",  # NAT64 of a public address still reaches IPv4 through a translator: refused
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
        "::1",
        "::",
        "fe80::1%eth0",
        "ff02::1",
    ],
)
def test_ipv6_forms_reaching_private_ipv4_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["2606:4700:4700::1111", "2002:0808:0808::1", "::ffff:8.8.8.8", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(address)


async def test_check_url_refuses_ipv6_literals(tmp_path) -> None:
    sender = WebhookSender(make_settings(tmp_path))
    for url in ("http://[2002:a00:1::1]/x", "http://[fec0::1]/x", "http://[64:ff9b::a00:1]/x", "http://[::10.0.0.1]/"):
        with pytest.raises(CallbackRefusedError, match="private"):
            await sender.check_url(url)
    assert await sender.check_url("https://[2606:4700:4700::1111]/hook") == ["2606:4700:4700::1111"]


async def test_a_final_event_lost_with_a_killed_process_is_recovered_once(tmp_path) -> None:
    """A process killed between a job's terminal write and its outbox row: the next start writes the final event
    (with the job's fixed terminal event id), and a further restart does not send it again."""
    receiver = Receiver()
    settings = make_settings(tmp_path, triton_concurrency=0, allow_private_callbacks=True, outbox_poll_s=0.05)
    try:
        async with running_app(settings, StageRunnerDouble()) as (app, client):
            headers = await login(client)
            body = {"theme": "x", "duration": 10, "generate_cover": False, "callback_url": receiver.url}
            intent = (await client.post("/v1/song/create", json=body, headers=headers)).json()["data"]["intent_id"]

            async def queued_sent() -> bool:
                return len(receiver.deliveries) >= 1

            await wait_for(queued_sent, what="the queued webhook")
            async with app.state.ctx.sessions() as session, session.begin():  # what a killed worker leaves behind
                await session.execute(
                    update(Job)
                    .where(Job.public_id == intent)
                    .values(status="failed", error="stage crashed", finished_at=time.time())
                )
        for _ in range(2):
            async with running_app(settings, StageRunnerDouble()) as (app, _client):

                async def final_sent() -> bool:
                    return any(json.loads(b)["event"] == "failed" for _, b in receiver.deliveries)

                await wait_for(final_sent, what="the recovered final webhook")
                await asyncio.sleep(0.3)
    finally:
        receiver.close()
    finals = [json.loads(b) for _, b in receiver.deliveries if json.loads(b)["event"] == "failed"]
    assert (
        len(finals) == 1
        and finals[0]["error"] == "stage crashed"
        and finals[0]["event_id"] == terminal_event_id(intent)
    )
