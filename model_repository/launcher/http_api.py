"""The tritonserver HTTP API calls :class:`~model_repository.launcher.server.TritonServer` offers (repository load and
unload, index, statistics); a mixin, so that the server module keeps to starting and stopping the process."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class TritonHttpApi:
    """Needs ``http_url`` (host:port of the server's HTTP endpoint)."""

    @property
    def http_url(self) -> str:
        raise NotImplementedError

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 300.0) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail)["error"]
            raise RuntimeError(f"tritonserver {method} {path} failed ({exc.code}): {detail}") from None

    def _get_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2.0) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return 0

    def load(self, model: str, *, config: str | None = None) -> None:
        """Load (or reload) ``model`` through the repository API; ``config`` is a JSON model-config override."""
        body: dict[str, Any] = {}
        if config is not None:
            json.loads(config)  # fail here, naming the problem, rather than with the server's parse error
            body = {"parameters": {"config": config}}
        self._request("POST", f"/v2/repository/models/{urllib.parse.quote(model)}/load", body)

    def unload(self, model: str) -> None:
        self._request("POST", f"/v2/repository/models/{urllib.parse.quote(model)}/unload", {})

    def repository_index(self) -> list[dict[str, Any]]:
        """The repository index: one ``{"name", "version", "state", "reason"}`` entry per model version."""
        result: list[dict[str, Any]] = json.loads(self._request("POST", "/v2/repository/index", {}))
        return result

    def model_statistics(self, model: str, version: str = "") -> dict[str, Any]:
        path = f"/v2/models/{urllib.parse.quote(model)}"
        if version:
            path += f"/versions/{urllib.parse.quote(version)}"
        result: dict[str, Any] = json.loads(self._request("GET", f"{path}/stats"))
        return result

