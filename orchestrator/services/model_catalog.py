"""What the deployment serves: the ``sampler``'s own catalog, the LM versions, and the model a request runs on.

Which model a request names is :mod:`orchestrator.families` (:func:`~orchestrator.families.parse_model`). Which
version sets exist is the repository's business: :func:`describe_models` asks the ``sampler`` model itself
(``{"describe": true}``, cached for a few seconds). From that:

- :func:`resolve_model` — the version set a request runs on: the one it names when served; an upstream name whose set
  is not served runs on the family's default set (as upstream runs on its loaded model); a pinned set
  (``name@set``) that is not served is a 422 naming what is;
- :func:`resolve_lm` — ``lm_model_path`` / ``lm_backend`` against the served ``lm`` versions (and
  ``TRITONE_LM_ALIASES``): the LM that runs, or a 422 naming what is served;
- :func:`model_listing` (families from their facts), :func:`checkpoint_entries` and :func:`lm_entries` — the
  listings of ``GET /v1/models`` and ``/v1/model_inventory``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ApiError
from orchestrator.families import FAMILY_FACTS, ModelChoice, checkpoint_name, variant_kind
from orchestrator.schemas.acestep import music_task_types
from orchestrator.services.triton import StageGateway
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

_DESCRIBE_TTL_S = 5.0
_cache: dict[int, tuple[float, dict[str, Any] | None, str | None]] = {}


async def describe_models(gateway: StageGateway, sampler_model: str) -> tuple[dict[str, Any] | None, str | None]:
    """The sampler's own catalog (families, version sets, defaults), or ``(None, reason)`` when it cannot answer.
    Answers are kept for a few seconds (submissions resolve their model against it)."""
    cached = _cache.get(id(gateway))
    if cached is not None and time.monotonic() - cached[0] < _DESCRIBE_TTL_S:
        return cached[1], cached[2]
    described, error = await _describe(gateway, sampler_model)
    _cache[id(gateway)] = (time.monotonic(), described, error)
    return described, error


def forget_catalog(gateway: StageGateway) -> None:
    """Drop the cached catalog (after loading or unloading models)."""
    _cache.pop(id(gateway), None)


async def _describe(gateway: StageGateway, sampler_model: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        async with contextlib.aclosing(gateway.stream(sampler_model, {"describe": True})) as events:
            async for event in events:
                if event.type == "done" and isinstance(event.data.get("families"), Mapping):
                    return dict(event.data), None
    except Exception as exc:  # the listing degrades to the families' facts; the reason is shown
        logger.warning("sampler describe failed: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"
    return None, "the sampler did not describe its models (an older sampler model?)"


@dataclass(frozen=True)
class ResolvedModel:
    """The model a request runs on: ``version_set`` None = the sampler's default set for the family (catalog
    unknown). ``requested``: what the request named; ``fallback``: the named set is not served, the default ran."""

    family: str
    version_set: str | None
    requested: str
    fallback: bool = False

    @property
    def name(self) -> str:
        return checkpoint_name(self.family, self.version_set)


def _sets(described: Mapping[str, Any] | None, family: str) -> tuple[list[str], str | None] | None:
    info = ((described or {}).get("families") or {}).get(family)
    if described is None or info is None:
        return None
    return sorted((info.get("version_sets") or {}).keys()), info.get("default_version_set")


def resolve_model(choice: ModelChoice, requested: str, described: Mapping[str, Any] | None) -> ResolvedModel:
    """The version set ``choice`` runs on, given the sampler's catalog (None: unknown — the choice is sent as is)."""
    if described is None:
        return ResolvedModel(choice.family, choice.version_set, requested)
    found = _sets(described, choice.family)
    if found is None:
        served = sorted((described.get("families") or {}).keys())
        raise ApiError(
            422,
            f"model: {requested!r} is a {choice.family} model, and this deployment serves no {choice.family} "
            f"version set (it serves {', '.join(served) or 'no family'}; GET /v1/models lists them)",
            field="model",
        )
    sets, default = found
    if choice.version_set is None or choice.version_set in sets:
        return ResolvedModel(choice.family, choice.version_set or default, requested)
    if choice.pinned:
        raise ApiError(
            422,
            f"model: version set {choice.version_set!r} of {choice.family} is not served; served: "
            f"{', '.join(sets) or 'none'} (GET /v1/models)",
            field="model",
        )
    logger.info("model %s: set %s not served, running on the default %s", requested, choice.version_set, default)
    return ResolvedModel(choice.family, default, requested, fallback=True)


def _kind(details: Mapping[str, Any] | None) -> str:
    return variant_kind((details or {}).get("variant"), is_turbo=(details or {}).get("is_turbo"))


def served_kinds(described: Mapping[str, Any] | None, family: str) -> dict[str, str]:
    """Each version set of ``family`` the sampler serves -> its DiT variant (turbo, sft, base: the facts'
    ``variant_kind``); empty without a catalog."""
    sets = (((described or {}).get("families") or {}).get(family) or {}).get("version_sets") or {}
    return {name: _kind(details) for name, details in sets.items()}


def set_task_types(family: str, details: Mapping[str, Any] | None) -> list[str]:
    """The API's task types a version set runs: its family's, less those its DiT variant was not trained for
    (turbo and SFT have no extract/lego/complete; the facts' ``task_variants``)."""
    facts = FAMILY_FACTS[family]
    kind = _kind(details)
    return [t for t in music_task_types(family) if kind in (facts.variants_for(t) or (kind,))]


async def ensure_task_variant(
    gateway: StageGateway, sampler_model: str, task_type: str, resolved: ResolvedModel
) -> None:
    """:func:`check_task_variant` against the sampler's catalog, looked up only for a task type some variants lack."""
    if FAMILY_FACTS[resolved.family].variants_for(task_type) is not None:
        described, _ = await describe_models(gateway, sampler_model)
        check_task_variant(task_type, resolved, described)


def check_task_variant(task_type: str, resolved: ResolvedModel, described: Mapping[str, Any] | None) -> None:
    """Before any work: a task type that the version set's DiT variant cannot run (extract/lego/complete need a base
    DiT) is a 422 naming ``task_type``, the variant needed and the served set that has it. Without a catalog the
    sampler refuses it itself (same words)."""
    facts = FAMILY_FACTS[resolved.family]
    needed = facts.variants_for(task_type)
    info = ((described or {}).get("families") or {}).get(resolved.family)
    if needed is None or info is None:
        return
    sets = info.get("version_sets") or {}
    name = resolved.version_set or info.get("default_version_set") or ""
    entry = sets.get(name) or {}
    served = served_kinds(described, resolved.family)
    refusal = facts.variant_refusal(
        task_type, version_set=name, variant=entry.get("variant"), is_turbo=entry.get("is_turbo"), served=served
    )
    if refusal is None:
        return
    able = sorted(n for n, kind in served.items() if kind in needed)
    fix = f"; set model to {checkpoint_name(resolved.family, able[0])!r}" if able else ""
    raise ApiError(422, f"task_type: {refusal} (model {resolved.requested!r}){fix}", field="task_type")


# --- the LM ----------------------------------------------------------------------------------------------------------
def served_lm(triton_models: list[dict[str, Any]], lm_model: str) -> list[str]:
    """The READY versions of the ``lm`` model, newest first (Triton sends a request to the newest)."""
    versions = [str(m.get("version") or "") for m in triton_models if m.get("name") == lm_model]
    ready = [
        str(m.get("version") or "")
        for m in triton_models
        if m.get("name") == lm_model and str(m.get("state", "")).upper() == "READY"
    ]
    chosen = ready or versions
    return sorted({v for v in chosen if v}, key=lambda v: (len(v), v), reverse=True) or [""]


# What upstream's clients send for the 5 Hz LM: its published checkpoints and its engine names. Like the DiT names,
# one that is not served (or mapped in TRITONE_LM_ALIASES) runs on the served LM, and the result says so
# (``fallback``); any other value is refused.
UPSTREAM_LM_NAMES = ("acestep-5Hz-lm-0.6B", "acestep-5Hz-lm-1.7B", "acestep-5Hz-lm-4B")
UPSTREAM_LM_BACKENDS = ("pt", "vllm", "mlx")


def resolve_lm(
    settings: Settings, triton_models: list[dict[str, Any]], *, lm_model_path: str | None, lm_backend: str | None
) -> dict[str, Any]:
    """``lm_model_path`` / ``lm_backend`` → the served LM that runs (``{"name", "version", "requested"}``); a name
    that is not served (directly, as ``lm:<version>``, or through ``TRITONE_LM_ALIASES``) runs on the served LM when
    it is one of upstream's (``fallback``), and is otherwise a 422 naming what is served."""
    versions = served_lm(triton_models, settings.lm_model)
    newest = versions[0]
    names = {settings.lm_model: newest} | {f"{settings.lm_model}:{v}": v for v in versions if v}
    requested = {k: v for k, v in (("lm_model_path", lm_model_path), ("lm_backend", lm_backend)) if v}
    fallback = False
    for field_name, value in requested.items():
        target = settings.lm_aliases.get(value, value)
        upstream = UPSTREAM_LM_NAMES if field_name == "lm_model_path" else UPSTREAM_LM_BACKENDS
        if target not in names and value in upstream:
            target, fallback = settings.lm_model, True  # upstream's name: run on the served LM, and say so
        if target not in names:
            raise ApiError(
                422,
                f"{field_name}: {value!r} is not served here; served LM: {', '.join(sorted(names))}"
                + (f"; aliases: {', '.join(sorted(settings.lm_aliases))}" if settings.lm_aliases else "")
                + " (map a client's name with TRITONE_LM_ALIASES, e.g. '{\"acestep-5Hz-lm-0.6B\": \"lm\"}', "
                "or leave the field empty)",
                field=field_name,
            )
        if names[target] != newest:
            raise ApiError(
                422,
                f"{field_name}: {value!r} is {settings.lm_model} version {names[target]}, but Triton sends LM requests "
                f"to its newest version {newest}; ask for {settings.lm_model} or unload version {newest}",
                field=field_name,
            )
    label = f"{settings.lm_model}:{newest}" if newest else settings.lm_model
    return {"name": label, "version": newest or None, "requested": requested or None, "fallback": fallback}


def lm_entries(settings: Settings, triton_models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ready = {
        str(m.get("version") or ""): str(m.get("state", "")).upper() == "READY"
        for m in triton_models
        if m.get("name") == settings.lm_model
    }
    entries = [{"name": f"{settings.lm_model}:{v}", "version": v, "is_loaded": ok} for v, ok in sorted(ready.items())]
    entries += [
        {"name": alias, "alias_of": target, "is_loaded": any(ready.values())}
        for alias, target in sorted(settings.lm_aliases.items())
    ]
    return entries


# --- listings --------------------------------------------------------------------------------------------------------
def checkpoint_entries(
    described: Mapping[str, Any] | None, default: ResolvedModel, sampler_ready: bool
) -> list[dict[str, Any]]:
    """One entry per served version set under the name clients know (``acestep-v15-turbo``, …): ``is_loaded``,
    ``supported_task_types`` from the family's facts, its network versions. Without a catalog: one entry per family
    (its default set)."""
    entries: list[dict[str, Any]] = []
    families = (described or {}).get("families") or {}
    for family in FAMILY_FACTS:
        if described is None:
            sets: list[tuple[str | None, Mapping[str, Any]]] = [(None, {})]
        elif family in families:
            sets = sorted(((k, v or {}) for k, v in (families[family].get("version_sets") or {}).items()))
        else:
            continue
        for name, details in sets:
            entries.append(
                {
                    "name": checkpoint_name(family, name),
                    "model": family if name is None else f"{family}:{name}",
                    "family": family,
                    "version_set": name,
                    "is_default": family == default.family and name == default.version_set,
                    "is_loaded": sampler_ready,
                    "supported_task_types": set_task_types(family, details) if name else list(
                        music_task_types(family)
                    ),
                    "versions": details.get("versions"),
                }
            )
    return entries


def model_listing(described: Mapping[str, Any] | None, default: ModelChoice) -> list[dict[str, Any]]:
    """One entry per family: its facts, whether it is served, its version sets (each with its ``model`` id), its
    default."""
    families = (described or {}).get("families") or {}
    entries = []
    for family, facts in FAMILY_FACTS.items():
        info = families.get(family)
        entry: dict[str, Any] = {
            "name": family,
            "description": facts.description,
            "is_default": family == default.family,
            "served": None if described is None else info is not None,
            "task_types": list(music_task_types(family)),
            "max_duration": facts.max_duration_s,
            "default_steps": facts.default_steps,
            "default_guidance": facts.default_guidance,
        }
        if facts.default_steps_turbo is not None:
            entry["default_steps_turbo"] = facts.default_steps_turbo
        if info:
            sets = info.get("version_sets") or {}
            entry["default_version_set"] = info.get("default_version_set")
            entry["version_sets"] = [
                {
                    "name": name,
                    "model": f"{family}:{name}",
                    "checkpoint": checkpoint_name(family, name),
                    "variant": (details or {}).get("variant"),
                    "task_types": set_task_types(family, details),
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
