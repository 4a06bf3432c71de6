"""The exported stems networks: ONNX Runtime vs torch on the tiny presets (<= 1e-4 relative; measured ~2e-6), the
graph is real-valued and its spectrogram split reproduces ``HTDemucs.forward``, configs come from the contracts."""

from __future__ import annotations

import onnx
import pytest
import torch

from export.onnx_export import check_parity, export_onnx
from export.stems.networks import NETWORK_FOR_SOURCES, SeparationNet, build_contract
from model_repository.stems.spectrogram import Spectrogram
from tests.model_repository.stems.support import preset_folder, tiny_bag, tiny_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def presets(tiny_repository, tiny_work):
    return preset_folder(tiny_work)


@pytest.mark.parametrize("sources", [4, 6])
def test_onnx_matches_torch(tiny_repository, presets, sources):
    model = tiny_model(presets, sources)
    contract = build_contract(model)
    path = tiny_repository / contract.name / "1" / "model.onnx"
    errors = check_parity(SeparationNet(model.models, model.weights).eval(), contract, path, sizes={"batch": 3})
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("sources", [4, 6])
def test_graph_is_real_valued_and_configs_are_the_contracts(tiny_repository, presets, sources):
    model = tiny_model(presets, sources)
    contract = build_contract(model)
    graph = onnx.load(str(tiny_repository / contract.name / "1" / "model.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {"STFT", "DFT", "Complex"}, ops
    for value in (*graph.graph.input, *graph.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name
    written = (tiny_repository / contract.name / "config.pbtxt").read_text()
    assert written == contract.triton_config(platform="cpu", version_policy="{ all { } }")
    assert contract.name == NETWORK_FOR_SOURCES[sources]
    assert contract.trt_profile()["mix"] == ((1, 2, 44100), (4, 2, 44100), (8, 2, 44100))


def test_split_at_the_complex_boundary_is_the_models_forward(presets):
    """spectrogram outside + network + iSTFT outside == HTDemucs.forward on a full segment."""
    model = tiny_model(presets, 4)
    net = SeparationNet(model.models, model.weights).eval()
    spectrogram = Spectrogram(model.nfft, model.hop_length)
    mix = torch.randn(2, 2, model.segment_samples, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.first(mix)
        got = spectrogram.inverse(*net(mix, spectrogram.forward(mix)))
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-6


@pytest.mark.slow
def test_bag_exports_as_one_graph(tmp_path):
    """A bag (htdemucs_ft's layout: a .yaml and its members) is one graph with the bag's per-source weights."""
    model = tiny_bag(tmp_path)
    contract = build_contract(model)
    net = SeparationNet(model.models, model.weights).eval()
    path = export_onnx(net, contract, tmp_path / "bag.onnx", sizes={"batch": 2})
    errors = check_parity(net, contract, path, sizes={"batch": 2})
    assert max(errors.values()) <= TOLERANCE, errors
