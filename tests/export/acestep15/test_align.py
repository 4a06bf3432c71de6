"""``dit_align``: which heads per checkpoint, and the attention probabilities the wrapper returns (tiny preset)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from diffusers.models.transformers.ace_step_transformer import AceStepAttnProcessor2_0

from export.acestep15.align import HEADS_FILE, UPSTREAM_HEADS, AlignDiT, resolve_heads
from export.acestep15.checkpoint import load_pipeline, read_dims
from export.acestep15.networks import build_contracts, wrappers
from export.onnx_export import run_torch


def _dit(layers: int, heads: int) -> SimpleNamespace:
    return SimpleNamespace(layers=[SimpleNamespace(cross_attn=SimpleNamespace(heads=heads))] * layers)


def test_real_sized_dits_get_upstreams_heads_and_small_ones_every_head():
    assert resolve_heads(_dit(24, 16)) == [(layer, h) for layer, hs in sorted(UPSTREAM_HEADS.items()) for h in hs]
    assert resolve_heads(_dit(2, 4)) == [(layer, h) for layer in range(2) for h in range(4)]


def test_a_checkpoint_file_chooses_the_heads_and_a_bad_one_is_named(tmp_path):
    (tmp_path / HEADS_FILE).write_text(json.dumps({"1": [3, 0], "0": [2]}))
    assert resolve_heads(_dit(2, 4), tmp_path) == [(0, 2), (1, 0), (1, 3)]
    (tmp_path / HEADS_FILE).write_text(json.dumps({"5": [0]}))
    with pytest.raises(ValueError, match=HEADS_FILE + r".*layer < 2"):
        resolve_heads(_dit(2, 4), tmp_path)
    (tmp_path / HEADS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        resolve_heads(_dit(2, 4), tmp_path)


@pytest.fixture(scope="module")
def tiny(tiny_preset_dirs):
    folder = tiny_preset_dirs["turbo"]
    return load_pipeline(folder), build_contracts(read_dims(folder))


def test_probabilities_cover_the_valid_keys_only_and_leave_dit_untouched(tiny):
    pipe, contracts = tiny
    contract = contracts["dit_align"]
    inputs = contract.sample_inputs({"batch": 2, "frames": 250, "encoder": 40, "lyric": 40}, seed=3)
    inputs["lyric_positions"] = np.tile(np.arange(40), (2, 1))
    dit, dit_contract = wrappers(pipe)["dit"](), contracts["dit"]
    dit_inputs = {k: v for k, v in inputs.items() if k != "lyric_positions"}
    velocity = run_torch(dit, dit_contract, dit_inputs)[0]
    module = AlignDiT(pipe.transformer, [(0, 1), (1, 3)])
    (probs,) = run_torch(module, contract, inputs)
    assert probs.shape == (2, 2, 125, 40)
    valid = inputs["encoder_attention_mask"].astype(bool)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert np.all(probs[~valid[:, None, None, :].repeat(2, 1).repeat(125, 2)] == 0.0)
    assert all(type(b.cross_attn.processor) is AceStepAttnProcessor2_0 for b in pipe.transformer.layers)
    # The dit wrapper over the same transformer is unaffected: the same velocity before and after.
    assert np.array_equal(run_torch(dit, dit_contract, dit_inputs)[0], velocity)
