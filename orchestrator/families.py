"""The model families as the orchestrator sees them: which family a request's ``model`` names, and the APIs' limits.

Everything here derives from :mod:`model_repository.facts.families`, where the families' names, task types, limits,
defaults and upstream aliases are stated once for export, serving and the orchestrator alike. This module imports
neither the settings nor the services, so schemas, settings and services can all use it (``tests/orchestrator/
test_layering.py`` keeps it that way).

The ``model`` field (and ``TRITONE_DEFAULT_MODEL``) names a family, optionally with a version set: ``acestep15``,
``acestep_v1``, ``acestep15:sft``, or an upstream name (``acestep-v15-turbo``, ``ACE-Step-v1-3.5B``).
:func:`parse_model` turns it into the sampler request's ``family`` + ``version_set`` (``None``: the family's default
set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from model_repository.facts.families import (
    ACESTEP15,
    ACESTEP_V1,
    DRAWN_SEED_RANGE,
    FAMILIES,
    FAMILY_FACTS,
    MAX_BATCH,
    MAX_DURATION_S,
    MAX_SEED,
    MAX_STEPS,
    MIN_DURATION_S,
    MIN_STEPS,
    FamilyFacts,
    family_facts,
    model_aliases,
    variant_kind,
)
from model_repository.facts.stems import MAX_SECONDS as STEMS_MAX_SECONDS
from model_repository.facts.stems import NETWORK_FOR_SOURCES as STEMS_NETWORKS
from model_repository.facts.stems import STEM_SETS, STEM_SETS_FOR_SOURCES

__all__ = [
    "ACESTEP15",
    "ACESTEP_V1",
    "ALIASES",
    "DRAWN_SEED_RANGE",
    "FAMILIES",
    "FAMILY_FACTS",
    "MAX_BATCH",
    "MAX_DURATION",
    "MAX_SEED",
    "MAX_STEPS",
    "MIN_DURATION",
    "MIN_STEPS",
    "STEMS_MAX_SECONDS",
    "STEMS_NETWORKS",
    "STEM_SETS",
    "STEM_SETS_FOR_SOURCES",
    "FamilyFacts",
    "UPSTREAM_15_MODELS",
    "UPSTREAM_V1_MODEL",
    "ModelChoice",
    "checkpoint_name",
    "clamp_duration",
    "family_facts",
    "parse_model",
    "variant_kind",
]


def _plain(value: float) -> int | float:
    """600.0 -> 600: the APIs' limits read as the page writes them (error texts, OpenAPI)."""
    return int(value) if float(value).is_integer() else value


# Seconds of audio the APIs accept (a request, a suggestion of the LM, an upload), every family together; a family
# may generate less (its ``max_duration_s``).
MIN_DURATION = _plain(MIN_DURATION_S)
MAX_DURATION = _plain(MAX_DURATION_S)
# Every ACE-Step 1.5 DiT checkpoint upstream publishes -> the version set that serves it here when one of that name
# is served. A name whose set is not served runs on the family's default set, as upstream runs a request on its loaded
# model; the result reports the model that ran (``orchestrator.services.model_catalog``).
UPSTREAM_15_MODELS: dict[str, str] = {
    "acestep-v15-turbo": "turbo",
    "acestep-v15-turbo-shift1": "turbo-shift1",
    "acestep-v15-turbo-shift3": "turbo-shift3",
    "acestep-v15-turbo-continuous": "turbo-continuous",
    "acestep-v15-turbo-rl": "turbo-rl",
    "acestep-v15-sft": "sft",
    "acestep-v15-base": "base",
    "acestep-v15-xl-turbo": "xl-turbo",
    "acestep-v15-xl-sft": "xl-sft",
    "acestep-v15-xl-base": "xl-base",
}
# The name clients know for the one v1 checkpoint.
UPSTREAM_V1_MODEL = "ACE-Step-v1-3.5B"
# Upstream model names (lower case) -> (family, version set or None for the family's default set).
ALIASES: dict[str, tuple[str, str | None]] = model_aliases() | {
    name: (ACESTEP15, version_set) for name, version_set in UPSTREAM_15_MODELS.items()
}
_VERSION_SET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def clamp_duration(value: float) -> float:
    """A duration pulled into the range the sampler accepts (an LM suggestion outside it is pulled back in)."""
    return float(min(MAX_DURATION_S, max(MIN_DURATION_S, float(value))))


@dataclass(frozen=True)
class ModelChoice:
    """A request's model: family and version set (None: the family's default set). ``pinned``: the caller named the
    version set itself (``<name>:<set>`` / ``<name>@<set>``), so it must be served; otherwise an upstream name whose
    set is not served falls back to the default set."""

    family: str
    version_set: str | None = None
    pinned: bool = field(default=False, compare=False)

    @property
    def id(self) -> str:
        return self.family if self.version_set is None else f"{self.family}:{self.version_set}"


def checkpoint_name(family: str, version_set: str | None) -> str:
    """The name clients know for a family's version set: ``acestep-v15-<set>`` for a set of an upstream checkpoint's
    name, ``ACE-Step-v1-3.5B`` for v1, else ``<family>:<set>`` (the family's name for its default set)."""
    if family == ACESTEP15 and version_set and f"acestep-v15-{version_set}" in UPSTREAM_15_MODELS:
        return f"acestep-v15-{version_set}"
    if family == ACESTEP_V1:
        return UPSTREAM_V1_MODEL
    return family if version_set is None else f"{family}:{version_set}"


def parse_model(value: str) -> ModelChoice:
    """``acestep15`` | ``acestep_v1`` | an upstream name | ``<family or name>:<version set>`` |
    ``<family or name>@<version set>``; raises ``ValueError`` naming the accepted forms."""
    text = value.strip()
    sep = "@" if "@" in text else ":"
    name, _, version_set = text.partition(sep)
    known = ALIASES.get(name.strip().lower())
    if known is None or (version_set and not _VERSION_SET.match(version_set.strip())):
        raise ValueError(
            f"must be a model family ({', '.join(FAMILIES)}), an upstream name ({', '.join(sorted(ALIASES))}), "
            f"'<family>:<version set>' (e.g. 'acestep15:turbo') or '<name>@<version set>' "
            f"(e.g. 'acestep-v15-turbo@canary'); got {value!r}"
        )
    family, default_set = known
    pinned = bool(version_set.strip())
    return ModelChoice(family, version_set.strip() or default_set, pinned=pinned)
