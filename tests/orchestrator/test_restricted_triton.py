"""Triton with its model-repository API restricted (``--grpc-restricted-protocol`` / ``--http-restricted-api``, as
``docker/compose.yaml`` runs it): without the header nobody can list, load or unload models; the orchestrator's gateway
and ``tritone models`` send it (``TRITONE_TRITON_RESTRICTED_KEY``) and can."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.services.triton import TritonGateway
from orchestrator.settings import Settings
from tests.markers import needs_triton
from tests.orchestrator.toy_models import write_echo_repository

pytestmark = [pytest.mark.triton, needs_triton]
ROOT = Path(__file__).resolve().parents[2]
KEY = "tritone-admin=s3cret-for-tests"
RESTRICTED = "model-repository,model-config,shared-memory,trace,logging"


def _post(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_repository_api_needs_the_key(tmp_path: Path) -> None:
    from model_repository.launcher.server import TritonServer

    repo = write_echo_repository(tmp_path / "repository")
    args = [f"--grpc-restricted-protocol={RESTRICTED}:{KEY}", f"--http-restricted-api={RESTRICTED}:{KEY}"]
    with TritonServer(repo, load_models=["echo"], extra_args=args, log_path=tmp_path / "triton.log") as server:
        index = f"http://{server.http_url}/v2/repository/index"
        assert _post(index) in (401, 403), "the repository index answered without the key"
        assert _post(f"http://{server.http_url}/v2/repository/models/echo/unload") in (401, 403)
        assert _post(index, {"tritone-admin": "s3cret-for-tests"}) == 200

        without = TritonGateway(Settings(triton_urls=[server.grpc_url]))
        with_key = TritonGateway(Settings(triton_urls=[server.grpc_url], triton_restricted_key=KEY))
        for gateway in (without, with_key):
            await gateway.start()
        try:
            assert without.serving() and with_key.serving()  # health is not restricted
            assert await without.models() == []
            assert [m["name"] for m in await with_key.models()] == ["echo"]
        finally:
            for gateway in (without, with_key):
                await gateway.close()

        base = [sys.executable, "-m", "orchestrator.cli", "models", "--server", server.grpc_url]
        refused = subprocess.run([*base, "list", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert refused.returncode != 0
        listed = subprocess.run(
            [*base, "--restricted-key", KEY, "list", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        assert "echo" in {row["name"] for row in json.loads(listed.stdout)}
