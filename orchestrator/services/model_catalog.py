"""Which song model a request asks for, and what the deployment serves.

The APIs' ``model`` field (and ``TRITONE_DEFAULT_MODEL``) names a family, optionally with a version set:
``acestep15``, ``acestep_v1``, ``acestep15:sft``, or an upstream name (``acestep-v15-turbo``, ``ACE-Step-v1-3.5B``).
:func:`parse_model` turns it into the sampler request's ``family`` + ``version_set`` (``None``: the family's default
set). Which version sets exist is the repository's business: :func:`describe_models` asks the ``sampler`` model
itself (``{"describe": true}``), and ``GET /v1/models`` lists its answer.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.services.triton import StageGateway

logger = logging.getLogger(__name__)

FAMILIES = ("acestep15", "acestep_v1")
# Upstream names -> (family, version set or None for the family's default set).
ALIASES: dict[str, tuple[str, str | None]] = {
    "acestep15": ("acestep15", None),
    "acestep-v15": ("acestep15", None),
    "acestep-v15-turbo": ("acestep15", "turbo"),
    "acestep-v15-base": ("acestep15", "base"),
    "acestep-v15-sft": ("acestep15", "sft"),
    "acestep_v1": ("acestep_v1", None),
    "acestep-v1": ("acestep_v1", None),
    "ace-step-v1-3.5b": ("acestep_v1", None),
}
_VERSION_SET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# ACE-Step v1: the original pipeline's defaults (the APIs' defaults are 1.5's) and what it can do.
V1_DEFAULT_STEPS = 60
V1_DEFAULT_GUIDANCE = 15.0
V1_MAX_DURATION_S = 240.0
V1_TASK_TYPES = ("text2music", "repaint")


@dataclass(frozen=True)
class ModelChoice:
    family: str
    version_set: str | None = None

    @property
    def id(self) -> str:
        return self.family if self.version_set is None else f"{self.family}:{self.version_set}"


def parse_model(value: str) -> ModelChoice:
    """``acestep15`` | ``acestep_v1`` | an upstream name | ``<family or name>:<version set>``; raises ``ValueError``
    naming the accepted forms."""
    text = value.strip()
    name, _, version_set = text.partition(":")
    known = ALIASES.get(name.strip().lower())
    if known is None or (version_set and not _VERSION_SET.match(version_set.strip())):
        raise ValueError(
            f"must be a model family ({', '.join(FAMILIES)}), an upstream name ({', '.join(sorted(ALIASES))}) or "
            f"'<family>:<version set>' (e.g. 'acestep15:turbo'); got {value!r}"
        )
    family, default_set = known
    return ModelChoice(family, version_set.strip() or default_set)


async def describe_models(gateway: StageGateway, sampler_model: str) -> tuple[dict[str, Any] | None, str | None]:
    """The sampler's own catalog (families, version sets, defaults), or ``(None, reason)`` when it cannot answer."""
    try:
        async with contextlib.aclosing(gateway.stream(sampler_model, {"describe": True})) as events:
            async for event in events:
                if event.type == "done" and isinstance(event.data.get("families"), Mapping):
                    return dict(event.data), None
    except Exception as exc:  # the listing degrades to the static families; the reason is shown
        logger.warning("sampler describe failed: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"
    return None, "the sampler did not describe its models (an older sampler model?)"


def model_listing(described: Mapping[str, Any] | None, default: ModelChoice) -> list[dict[str, Any]]:
    """One entry per family: whether it is served, its version sets (each with its ``model`` id), its default."""
    families = (described or {}).get("families") or {}
    entries = []
    for family in FAMILIES:
        info = families.get(family)
        entry: dict[str, Any] = {
            "name": family,
            "is_default": family == default.family,
            "served": None if described is None else info is not None,
        }
        if info:
            sets = info.get("version_sets") or {}
            entry["default_version_set"] = info.get("default_version_set")
            entry["version_sets"] = [
                {
                    "name": name,
                    "model": f"{family}:{name}",
                    "variant": (details or {}).get("variant"),
                    "versions": (details or {}).get("versions"),
                    "is_default": name == (default.version_set or info.get("default_version_set"))
                    and family == default.family,
                }
                for name, details in sorted(sets.items())
            ]
            for key in ("sample_rate", "max_duration", "default_steps"):
                if key in info:
                    entry[key] = info[key]
        entries.append(entry)
    return entries
