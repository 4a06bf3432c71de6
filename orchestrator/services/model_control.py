"""Upstream's ``/v1/init`` on Triton: a version set is "loaded" when every network version it names is READY; loading
one asks each Triton server (model control, ``version_policy { specific }``) to serve those versions beside the ones
it already serves, so in-flight requests finish where they started.

Triton must run with ``--model-control-mode=explicit`` for loads to be accepted (``tritone serve`` does); otherwise
the server's refusal is passed on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import ApiError
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)


def missing_versions(versions: Mapping[str, str], triton_models: list[dict[str, Any]]) -> dict[str, str]:
    """The ``network -> version`` pairs of a version set that no server reports READY."""
    ready = {
        (str(m.get("name")), str(m.get("version")))
        for m in triton_models
        if str(m.get("state", "")).upper() == "READY"
    }
    return {name: str(v) for name, v in versions.items() if (name, str(v)) not in ready}


async def load_versions(settings: Settings, wanted: Mapping[str, str]) -> None:
    """Make every server serve ``wanted`` (network -> version) in addition to the versions it serves READY now."""
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import InferenceServerException

    for url in settings.triton_urls:
        client = grpcclient.InferenceServerClient(url)
        try:
            index = (await client.get_model_repository_index(as_json=True, client_timeout=10.0)).get("models", [])
            for name, version in sorted(wanted.items()):
                keep = {
                    int(m["version"])
                    for m in index
                    if m.get("name") == name and str(m.get("state", "")).upper() == "READY"
                    and str(m.get("version", "")).isdigit()
                }
                versions = sorted(keep | {int(version)})
                config = (await client.get_model_config(name, as_json=True, client_timeout=10.0)).get("config", {})
                config["version_policy"] = {"specific": {"versions": versions}}
                logger.info("triton %s: loading %s versions %s", url, name, versions)
                await client.load_model(name, config=json.dumps(config), client_timeout=300.0)
        except InferenceServerException as exc:
            raise ApiError(
                409,
                f"Triton {url} refused to load {dict(wanted)}: {exc.message()} (is it running with "
                "--model-control-mode=explicit, and are those versions in its repository?)",
            ) from None
        except ValueError as exc:
            raise ApiError(422, f"model: a network version is not a number ({exc})", field="model") from None
        except OSError as exc:
            raise ApiError(503, f"Triton {url} is not reachable for model control: {exc}") from None
        finally:
            await client.close()
