"""The model families the ``sampler`` serves: names, task types, limits and defaults, stated once.

Export writes a family's manifest from these, the sampler validates requests with them, and the orchestrator derives
its API validation and ``GET /v1/models`` from them. A new family is one :class:`FamilyFacts` entry in
:data:`FAMILY_FACTS` (plus its serving and export folders; ``docs/architecture.md`` lists the places).

Kept free of heavy imports: the orchestrator's image has no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

ACESTEP15: Final = "acestep15"
ACESTEP_V1: Final = "acestep_v1"

# Limits every family shares (the sampler request's and the public APIs' ranges).
MIN_DURATION_S: Final = 10.0
MAX_DURATION_S: Final = 600.0
MIN_STEPS: Final = 1
MAX_STEPS: Final = 200
MAX_BATCH: Final = 8
MAX_SEED: Final = 2**32 - 1
# Seeds the orchestrator draws itself come from [0, 2^31): they fit every backend's int32/int64 generator seed.
DRAWN_SEED_RANGE: Final = 2**31

# ACE-Step 1.5's track classes (upstream ``acestep/constants.py`` TRACK_NAMES): what ``extract`` separates, ``lego``
# generates and ``complete`` adds. The instruction names a class in upper case ("Extract the DRUMS track ...").
TRACK_CLASSES: Final = (
    "vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard",
    "percussion", "strings", "synth", "fx", "brass", "woodwinds",
)
# DiT variants as upstream names them; a version set's ``variant`` (the transformer's ``model_version``) is read
# into one of these by :func:`variant_kind`.
TURBO, SFT, BASE = "turbo", "sft", "base"


def variant_kind(variant: str | None, *, is_turbo: bool | None) -> str:
    """``turbo`` | ``sft`` | ``base`` | the variant as given (``unknown`` when None), by upstream's rule
    (``_is_pure_base_model``: "base" in the name and neither "sft" nor "turbo"): ``acestep-v15-base-sft-fix`` is SFT."""
    name = (variant or "").lower()
    if is_turbo or TURBO in name:
        return TURBO
    if SFT in name:
        return SFT
    if BASE in name:
        return BASE
    return name or "unknown"


@dataclass(frozen=True)
class FamilyFacts:
    """What one family can do and how it behaves by default."""

    name: str
    description: str
    task_types: tuple[str, ...]
    # Task types that read source audio (``src_audio``); cover in 1.5 may take audio codes instead (see below).
    needs_source: tuple[str, ...]
    default_guidance: float
    # Default DiT steps: by ``is_turbo`` where the family has distilled (turbo) variants, else one value for all.
    default_steps: int
    default_steps_turbo: int | None = None
    max_duration_s: float = MAX_DURATION_S
    # Where the family's manifest lives under the sampler's ``assets/`` ("" = the folder itself).
    assets_dir: str = ""
    # Upstream model names that mean this family, each with its version set (None = the family's default set).
    aliases: dict[str, str | None] = field(default_factory=dict)
    # The sampler request fields that only this family reads.
    own_fields: tuple[str, ...] = ()
    # Task types that only some DiT variants were trained for -> those variants (:func:`variant_kind`); a task type
    # not listed runs on every variant.
    task_variants: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def variants_for(self, task_type: str) -> tuple[str, ...] | None:
        """The variants that run ``task_type``; None = every variant."""
        return self.task_variants.get(task_type)

    def variant_refusal(
        self, task_type: str, *, version_set: str, variant: str | None, is_turbo: bool | None,
        served: dict[str, str] | None = None,
    ) -> str | None:
        """Why version set ``version_set`` (its ``variant``/``is_turbo``) cannot run ``task_type``, naming the variant
        needed and the served sets that have it (``served``: set name -> its :func:`variant_kind`); None if it can."""
        needed = self.variants_for(task_type)
        kind = variant_kind(variant, is_turbo=is_turbo)
        if needed is None or kind in needed:
            return None
        want = " or ".join(needed)
        able = sorted(name for name, k in (served or {}).items() if k in needed)
        where = (
            f"version set {' or '.join(repr(n) for n in able)}" if able
            else f"none is served: export an upstream acestep-v15-{needed[0]} checkpoint as version set "
            f"'{needed[0]}'"
        )
        return f"{task_type} needs a {want} checkpoint ({where}); the served set {version_set!r} is a {kind} DiT"

    def steps_for(self, *, is_turbo: bool) -> int:
        if is_turbo and self.default_steps_turbo is not None:
            return self.default_steps_turbo
        return self.default_steps


ACESTEP15_FACTS = FamilyFacts(
    name=ACESTEP15,
    description="ACE-Step 1.5 (diffusers AceStepPipeline): turbo, base and SFT DiTs, 5 Hz audio codes, 48 kHz VAE",
    task_types=("text2music", "repaint", "cover", "extract", "lego", "complete"),
    needs_source=("repaint", "extract", "lego", "complete"),
    default_guidance=7.0,
    default_steps=50,
    default_steps_turbo=8,
    assets_dir="",
    aliases={
        "acestep15": None,
        "acestep-v15": None,
        "acestep-v15-turbo": "turbo",
        "acestep-v15-base": "base",
        "acestep-v15-sft": "sft",
    },
    own_fields=(
        "track_name", "complete_track_classes", "instruction", "repainting_start", "repainting_end",
        "audio_cover_strength", "audio_codes", "use_adg", "cfg_interval_start", "cfg_interval_end", "timesteps",
        "align_lyrics", "track_names", "lyric_guidance",
    ),
    # Upstream (acestep/constants.py TASK_TYPES_TURBO / TASK_TYPES_BASE, "pure base models only"): turbo and SFT
    # DiTs were not trained for the track tasks; only the base DiT runs them.
    task_variants={"extract": (BASE,), "lego": (BASE,), "complete": (BASE,)},
)

ACESTEP_V1_FACTS = FamilyFacts(
    name=ACESTEP_V1,
    description="ACE-Step v1 3.5B (DCAE + vocoder): retake, repaint and extend edits, trained on up to 240 s",
    # retake = a variation of a song (its seeds + retake_seeds, retake_variance); repaint/extend edit a source.
    task_types=("text2music", "retake", "repaint", "extend"),
    needs_source=("repaint", "extend"),
    default_guidance=15.0,
    default_steps=60,
    # The checkpoint was trained on up to 240 s (2583 latent frames); longer extends decode in overlapped windows.
    max_duration_s=240.0,
    assets_dir=ACESTEP_V1,
    aliases={"acestep_v1": None, "acestep-v1": None, "ace-step-v1-3.5b": None},
    own_fields=(
        "omega_scale", "scheduler", "guidance_type", "guidance_interval", "guidance_interval_decay",
        "min_guidance_scale", "guidance_scale_text", "guidance_scale_lyric", "use_erg_tag", "use_erg_lyric",
        "use_erg_diffusion", "retake_variance", "retake_seeds", "repaint_start", "repaint_end",
    ),
)

# The registry, in preference order: the first family a repository serves is its default.
FAMILY_FACTS: Final = MappingProxyType({f.name: f for f in (ACESTEP15_FACTS, ACESTEP_V1_FACTS)})
FAMILIES: Final = tuple(FAMILY_FACTS)


def family_facts(name: str) -> FamilyFacts:
    """The facts of family ``name``; ``ValueError`` naming the known families otherwise."""
    try:
        return FAMILY_FACTS[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def model_aliases() -> dict[str, tuple[str, str | None]]:
    """Every upstream model name -> (family, version set or None for the family's default set)."""
    return {alias: (f.name, vs) for f in FAMILY_FACTS.values() for alias, vs in f.aliases.items()}
