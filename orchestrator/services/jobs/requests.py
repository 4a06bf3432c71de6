"""The sampler request, typed, and everything that differs between model families on the orchestrator's side.

One :class:`FamilyRequests` per family (the registry :data:`FAMILY_REQUESTS`, keyed like
``model_repository.facts.families.FAMILY_FACTS``) says, from that family's facts:

- which ACE-Step API requests it can serve (task types, source audio, duration, the fields only another family
  reads) — a request it cannot serve is a 422 naming the field, not a silently dropped value;
- the defaults it takes where the client set nothing (the APIs' defaults are ACE-Step 1.5's);
- the sampler request it gets: a :class:`SamplerRequest` subclass holding that family's fields, ``to_json()`` for the
  wire (``None`` = unset; the engine leaves those out).

A new family whose requests carry fields of its own is one more request class and one more registry line here; one
without needs nothing here (:func:`for_family` gives it the common rules from its facts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ApiError
from orchestrator.families import ACESTEP15, ACESTEP_V1, FAMILIES, FamilyFacts, ModelChoice, family_facts
from orchestrator.schemas.acestep import TASKS_NEEDING_SOURCE, MusicGenerateCreate, music_task_types


@dataclass(frozen=True, kw_only=True)
class SamplerRequest:
    """The fields every family reads."""

    family: str
    version_set: str | None
    caption: str
    lyrics: str
    duration: float | None  # None: the source audio's length
    inference_steps: int
    guidance_scale: float
    seeds: list[int]
    task_type: str = "text2music"
    versions: dict[str, str] | None = None  # per-network pins on top of the version set (a canary network)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"batch_size": len(self.seeds)}


@dataclass(frozen=True, kw_only=True)
class Acestep15Request(SamplerRequest):
    vocal_language: str | None
    bpm: int | None
    key_scale: str | None
    time_signature: str | None
    use_adg: bool
    align_lyrics: bool | None = None  # lyric timing from the DiT (None: the sampler's default, off)
    shift: float | None = None
    timesteps: list[float] | None = None
    cfg_interval_start: float | None = None
    cfg_interval_end: float | None = None
    instruction: str | None = None
    track_name: str | None = None
    complete_track_classes: list[str] | None = None
    audio_cover_strength: float | None = None
    audio_codes: str | list[str] | None = None
    repainting_start: float | None = None
    repainting_end: float | None = None
    lyric_guidance: float | None = None  # set by the edits' lyrics_strength (services/jobs/edits.py)
    # extract of several classes as one batch: one item per class, all from the first seed (the sampler's rule)
    track_names: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.track_names:
            out |= {"seeds": self.seeds[:1], "batch_size": len(self.track_names)}
        return out


@dataclass(frozen=True, kw_only=True)
class AcestepV1Request(SamplerRequest):
    """v1 reads the caption as tags: no bpm/key/time signature (1.5 prompt metadata), no LM codes."""

    shift: float | None = None
    repaint_start: float | None = None
    repaint_end: float | None = None
    # v1's double-condition guidance, set by the edits' lyrics_strength (services/jobs/edits.py)
    guidance_scale_text: float | None = None
    guidance_scale_lyric: float | None = None


def _repaint_end(p: Mapping[str, Any]) -> Any:
    end = p.get("repainting_end")
    return None if end in (None, -1) else end


class FamilyRequests:
    """A family's side of the orchestrator; subclasses state what differs."""

    # ACE-Step API fields whose meaning this family's request carries under its own names (not "unsupported").
    maps_fields: tuple[str, ...] = ()

    def __init__(self, facts: FamilyFacts) -> None:
        self.facts = facts

    @property
    def name(self) -> str:
        return self.facts.name

    def defaults(self, params: dict[str, Any], given: set[str]) -> None:
        """Fill in what the client did not set (``given``: the fields it did); the APIs' defaults stand here."""

    def check_music(self, body: MusicGenerateCreate, choice: ModelChoice) -> None:
        """Before uploads are read: a task type this family does not serve is a 422 naming the families that do."""
        served = music_task_types(self.name)
        if body.task_type not in served:
            others = [f for f in FAMILIES if body.task_type in music_task_types(f)]
            raise ApiError(
                422,
                f"task_type: model {choice.id} does {_words(served)}; '{body.task_type}' needs an "
                f"{' or '.join(others)} model",
                field="task_type",
            )

    def check_music_sources(
        self, body: MusicGenerateCreate, choice: ModelChoice, sources: Mapping[str, bytes]
    ) -> None:
        """With the uploads: what this family cannot read, or cannot generate, is a 422 naming the field."""
        if body.audio_duration is not None and body.audio_duration > self.facts.max_duration_s:
            raise ApiError(
                422,
                f"audio_duration: {choice.id} generates at most {self.facts.max_duration_s:g} s",
                field="audio_duration",
            )

    def build(
        self, kind: str, p: Mapping[str, Any], meta: Mapping[str, Any], state: Mapping[str, Any]
    ) -> SamplerRequest:
        """The sampler request of a job of ``kind`` ("song", "music") from its params, metadata and stage state; a
        family without request fields of its own gets the common ones (a music job's task type as asked)."""
        duration = min(float(meta["duration"]), self.facts.max_duration_s)
        task_type = (p.get("task_type") if kind == "music" else None) or "text2music"
        return SamplerRequest(**self._common(p, state, duration=duration), task_type=task_type)

    def _common(self, p: Mapping[str, Any], state: Mapping[str, Any], *, duration: float | None) -> dict[str, Any]:
        """The :class:`SamplerRequest` fields, which every family fills alike."""
        return {
            "family": self.name,
            "version_set": p.get("version_set"),
            "caption": state["caption"],
            "lyrics": state["sampler_lyrics"],
            "duration": duration,
            "inference_steps": p["inference_steps"],
            "guidance_scale": p["guidance_scale"],
            "seeds": p["seeds"],
            "versions": p.get("network_versions") or None,
        }


class Acestep15Requests(FamilyRequests):
    def build(
        self, kind: str, p: Mapping[str, Any], meta: Mapping[str, Any], state: Mapping[str, Any]
    ) -> SamplerRequest:
        common = self._common(p, state, duration=meta["duration"]) | {
            "vocal_language": p.get("vocal_language") or p.get("language"),
            "bpm": meta.get("bpm"),
            "key_scale": meta.get("key_scale"),
            "time_signature": meta.get("time_signature"),
            "use_adg": p["use_adg"],
            "align_lyrics": p.get("align_lyrics") or None,
        }
        if kind != "music":
            return Acestep15Request(**common)
        repaint = p["task_type"] == "repaint"
        return Acestep15Request(
            **common,
            task_type=p["task_type"],
            shift=p["shift"],
            # Upstream lists end at 0 ("…,0.085,0"); the sampler takes the points above 0 and ends there itself.
            timesteps=[t for t in p["timesteps"] if t > 0] if p.get("timesteps") else None,
            cfg_interval_start=p["cfg_interval_start"],
            cfg_interval_end=p["cfg_interval_end"],
            instruction=p.get("instruction"),
            track_name=p.get("track_name"),
            complete_track_classes=p.get("complete_track_classes"),
            track_names=p.get("track_names") or None,
            audio_cover_strength=p["audio_cover_strength"],
            audio_codes=state.get("codes"),
            repainting_start=p["repainting_start"] if repaint else None,
            repainting_end=_repaint_end(p) if repaint else None,
            lyric_guidance=p.get("lyric_guidance"),
        )


class AcestepV1Requests(FamilyRequests):
    # v1's repaint window is the API's repainting_start/end, sent as repaint_start/end.
    maps_fields = ("repainting_start", "repainting_end")

    def defaults(self, params: dict[str, Any], given: set[str]) -> None:
        """Steps and guidance the client did not set take the v1 pipeline's defaults, not the 1.5 API's."""
        if "inference_steps" not in given:
            params["inference_steps"] = self.facts.default_steps
        if "guidance_scale" not in given:
            params["guidance_scale"] = self.facts.default_guidance

    def check_music_sources(
        self, body: MusicGenerateCreate, choice: ModelChoice, sources: Mapping[str, bytes]
    ) -> None:
        for name, owner in _foreign_fields(self).items():
            default = MusicGenerateCreate.model_fields[name].default
            if getattr(body, name) not in (default, [], ""):
                raise ApiError(
                    422, f"{name}: applies to the {owner} models only, not to {choice.id}; remove it", field=name
                )
        # v1 has no 5 Hz audio codes: neither the client's nor the LM's ("thinking").
        if body.codes_list:
            raise ApiError(422, f"audio_code_string: 5 Hz audio codes drive {ACESTEP15} only, not {choice.id}",
                           field="audio_code_string")
        if body.thinking:
            raise ApiError(422, f"thinking: applies to the {ACESTEP15} models only, not to {choice.id}; remove it",
                           field="thinking")
        if "reference_audio" in sources:
            raise ApiError(422, f"reference_audio: applies to the {ACESTEP15} models only, not to {choice.id}",
                           field="reference_audio")
        edits = [t for t in music_task_types(self.name) if t in TASKS_NEEDING_SOURCE]
        if "src_audio" in sources and body.task_type not in edits:
            raise ApiError(
                422,
                f"src_audio: {choice.id} reads source audio for task_type {_words(edits, quote=True)} only",
                field="src_audio",
            )
        super().check_music_sources(body, choice, sources)

    def build(
        self, kind: str, p: Mapping[str, Any], meta: Mapping[str, Any], state: Mapping[str, Any]
    ) -> SamplerRequest:
        common = self._common(p, state, duration=min(float(meta["duration"]), self.facts.max_duration_s))
        if kind != "music":
            return AcestepV1Request(**common)
        common |= {key: p.get(key) for key in ("guidance_scale_text", "guidance_scale_lyric")}
        if p["task_type"] != "repaint":
            return AcestepV1Request(**common, shift=p["shift"])
        end = _repaint_end(p)
        return AcestepV1Request(
            **common | {"duration": None},  # the source's length
            task_type="repaint",
            shift=p["shift"],
            repaint_start=p["repainting_start"],
            repaint_end=p.get("src_audio_seconds") if end is None else end,
        )


def _foreign_fields(family: FamilyRequests) -> dict[str, str]:
    """ACE-Step API fields that are another family's own sampler fields (and not mapped by ``family``) -> that
    family: a value other than the API's default would be lost on ``family``."""
    foreign: dict[str, str] = {}
    for other in FAMILIES:
        if other == family.name:
            continue
        for name in family_facts(other).own_fields:
            if name in MusicGenerateCreate.model_fields and name not in family.facts.own_fields:
                if name not in family.maps_fields:
                    foreign.setdefault(name, other)
    return foreign


def _words(items: list[str] | tuple[str, ...], *, quote: bool = False) -> str:
    """``a``, ``a and b``, ``a, b and c`` (each in quotes with ``quote``)."""
    shown = [f"'{i}'" if quote else i for i in items]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


FAMILY_REQUESTS: dict[str, FamilyRequests] = {
    ACESTEP15: Acestep15Requests(family_facts(ACESTEP15)),
    ACESTEP_V1: AcestepV1Requests(family_facts(ACESTEP_V1)),
}


def for_family(name: str) -> FamilyRequests:
    """The requests of family ``name``: its entry in :data:`FAMILY_REQUESTS`, or the common rules for a family whose
    facts are all it needs (``ValueError`` for an unknown family)."""
    return FAMILY_REQUESTS.get(name) or FamilyRequests(family_facts(name))
