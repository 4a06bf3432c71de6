"""ONNX Runtime vs torch for every exported network, on random inputs at two lengths each (fp32, rel err <= 1e-4)."""

from __future__ import annotations

import pytest

from export.acestep15.checkpoint import load_pipeline, read_dims
from export.acestep15.networks import build_contracts, wrappers
from export.acestep15.repository import NETWORKS
from export.onnx_export import check_parity

SIZES = (
    {"batch": 1, "frames": 250, "text": 17, "lyric": 40, "encoder": 58, "samples": 1920 * 13, "codes": 25},
    {"batch": 3, "frames": 750, "text": 64, "lyric": 300, "encoder": 365, "samples": 1920 * 40, "codes": 150},
)


@pytest.fixture(scope="module")
def turbo(tiny_preset_dirs):
    return load_pipeline(tiny_preset_dirs["turbo"]), build_contracts(read_dims(tiny_preset_dirs["turbo"]))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sizes", SIZES, ids=["short", "long"])
def test_onnx_matches_torch(tiny_repository, turbo, network, sizes):
    pipe, contracts = turbo
    onnx = tiny_repository / network / "1" / "model.onnx"
    errors = check_parity(wrappers(pipe)[network](), contracts[network], onnx, sizes=sizes, seed=7)
    assert errors and all(err <= 1e-4 for err in errors.values()), errors


def test_second_dit_version_is_the_sft_weights(tiny_repository, tiny_preset_dirs):
    sft = load_pipeline(tiny_preset_dirs["sft"])
    contract = build_contracts(read_dims(tiny_preset_dirs["sft"]))["dit"]
    module = wrappers(sft)["dit"]()
    assert (
        check_parity(module, contract, tiny_repository / "dit" / "2" / "model.onnx", sizes=SIZES[0])["velocity"] <= 1e-4
    )
    # ... and not the turbo weights.
    assert (
        check_parity(module, contract, tiny_repository / "dit" / "1" / "model.onnx", sizes=SIZES[0])["velocity"] > 1e-2
    )
