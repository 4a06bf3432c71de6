"""The family facts: one registry, consistent with the sampler's request parsing and free of heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model_repository.facts import families
from model_repository.facts.families import FAMILIES, FAMILY_FACTS, family_facts, model_aliases
from model_repository.sampler import request


def test_registry_lists_both_families_in_preference_order():
    assert FAMILIES == ("acestep15", "acestep_v1")
    assert set(FAMILY_FACTS) == set(FAMILIES)
    with pytest.raises(ValueError, match="unknown model family 'nope'; known: acestep15, acestep_v1"):
        family_facts("nope")


def test_sampler_request_reads_its_task_types_and_limits_from_the_facts():
    assert request.TASK_TYPES == family_facts("acestep15").task_types
    v1_tasks = ("text2music", "retake", "repaint", "extend")
    assert request.V1_TASK_TYPES == family_facts("acestep_v1").task_types == v1_tasks
    assert request.DEFAULT_GUIDANCE == {"acestep15": 7.0, "acestep_v1": 15.0}
    assert request.V1_MAX_DURATION_S == 240.0 and request.MAX_DURATION_S == families.MAX_DURATION_S == 600.0
    # A field of the other family is refused by name (the lists the parser checks come from the facts).
    with pytest.raises(request.RequestError, match="field 'omega_scale' applies to family 'acestep_v1' only"):
        request.parse_request('{"omega_scale": 5}', codebook_size=64, has_src_audio=False)
    with pytest.raises(request.RequestError, match="field 'use_adg' applies to family 'acestep15' only"):
        request.parse_request('{"family": "acestep_v1", "use_adg": true}', codebook_size=64, has_src_audio=False)


def test_defaults_by_variant():
    assert family_facts("acestep15").steps_for(is_turbo=True) == 8
    assert family_facts("acestep15").steps_for(is_turbo=False) == 50
    assert family_facts("acestep_v1").steps_for(is_turbo=True) == 60  # no turbo variant: one default


def test_aliases_map_upstream_names_to_family_and_version_set():
    aliases = model_aliases()
    assert aliases["acestep-v15-sft"] == ("acestep15", "sft")
    assert aliases["ace-step-v1-3.5b"] == ("acestep_v1", None)
    assert all(family in FAMILIES for family, _ in aliases.values())


def test_facts_import_nothing_heavy():
    code = (
        "import sys, model_repository.facts.families, model_repository.facts.manifest; "
        "heavy = ('torch', 'numpy', 'triton_python_backend_utils', 'transformers'); "
        "bad = sorted(m for m in heavy if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_track_tasks_need_a_base_dit_as_upstream_says():
    facts = family_facts("acestep15")
    assert families.TRACK_CLASSES[:3] == ("vocals", "backing_vocals", "drums") and len(families.TRACK_CLASSES) == 12
    assert {t: facts.variants_for(t) for t in ("text2music", "repaint", "cover")} == dict.fromkeys(
        ("text2music", "repaint", "cover")
    )
    assert facts.variants_for("extract") == facts.variants_for("lego") == facts.variants_for("complete") == ("base",)
    kind = families.variant_kind
    assert [kind(v, is_turbo=t) for v, t in (("turbo", True), ("sft", False), ("base", False))] == [
        "turbo", "sft", "base"
    ]
    # upstream's rule: "base" and neither "sft" nor "turbo"; a set flagged turbo is turbo whatever its name
    assert kind("base-sft-fix-inst", is_turbo=False) == "sft" and kind("xl-base", is_turbo=True) == "turbo"
    assert kind(None, is_turbo=False) == "unknown"


def test_a_track_task_on_a_turbo_set_names_the_variant_and_the_set_that_has_it():
    facts = family_facts("acestep15")
    served = {"turbo": "turbo", "sft": "sft", "base": "base"}
    message = facts.variant_refusal("extract", version_set="turbo", variant="turbo", is_turbo=True, served=served)
    assert message == "extract needs a base checkpoint (version set 'base'); the served set 'turbo' is a turbo DiT"
    sft = facts.variant_refusal("lego", version_set="sft", variant="sft", is_turbo=False, served={"sft": "sft"})
    assert sft is not None and "lego needs a base checkpoint (none is served: export an upstream" in sft
    assert "the served set 'sft' is a sft DiT" in sft
    assert facts.variant_refusal("extract", version_set="base", variant="base", is_turbo=False, served=served) is None
    assert facts.variant_refusal("cover", version_set="turbo", variant="turbo", is_turbo=True) is None
    assert family_facts("acestep_v1").variant_refusal("repaint", version_set="x", variant=None, is_turbo=None) is None
