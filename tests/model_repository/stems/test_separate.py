"""The separator's library half without a server: segmenting, overlap-add and resampling reproduce
``demucs_infer.apply.apply_model`` (the network run in-process with torch), stem sets, request and audio checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.stems.networks import NETWORK_FOR_SOURCES, SeparationNet
from export.stems.presets import build_tiny
from export.stems.repository import describe
from model_repository.acestep_v1.resample import resample
from model_repository.stems.separate import Separator, StemsRequest, check_audio, parse_request, pick_network
from model_repository.stems.sets import StemsError, stem_matrix
from tests.model_repository.stems.support import reference, relative_error, song, tiny_bag

TOLERANCE = 1e-4


def _torch_separator(model, **kwargs) -> Separator:
    net = SeparationNet(model.models, model.weights).eval()

    def call(name, inputs):
        with torch.no_grad():
            spec_out, wave_out = net(torch.from_numpy(inputs["mix"]), torch.from_numpy(inputs["spec"]))
        return {"spec_out": spec_out.numpy(), "wave_out": wave_out.numpy()}

    return Separator(describe(model), call, **kwargs)


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    from export.stems.checkpoint import load

    return load(build_tiny(tmp_path_factory.mktemp("stems-tiny"), sources=4))


@pytest.mark.parametrize(("seconds", "overlap", "rows"), [(3.4, 0.25, 4), (2.0, 0.5, 1), (0.3, 0.25, 8)])
def test_segments_and_overlap_add_are_apply_models(tiny4, seconds, overlap, rows):
    audio = song(seconds)
    got = _torch_separator(tiny4, rows_per_call=rows, calls_in_flight=2).run(
        audio, StemsRequest(stems=4, overlap=overlap, sample_rate=44100)
    )
    want = reference(tiny4, audio, overlap)
    assert [name for name, _ in got] == ["drums", "bass", "other", "vocals"]
    assert relative_error(np.stack([w for _, w in got]), want) <= TOLERANCE


def test_48k_in_and_out_and_two_stems(tiny4):
    audio = song(2.5, rate=48000)
    progress = []
    got = dict(_torch_separator(tiny4).run(audio, StemsRequest(stems=2), progress=progress.append))
    at_model_rate = resample(torch.from_numpy(audio), 48000, 44100).numpy()
    want = torch.from_numpy(reference(tiny4, at_model_rate))
    want = resample(want, 44100, 48000)[..., : audio.shape[-1]].numpy()
    assert got["vocals"].shape == audio.shape
    assert relative_error(got["vocals"], want[3]) <= TOLERANCE
    assert relative_error(got["instrumental"], want[:3].sum(0)) <= TOLERANCE
    assert progress[-1] == {"type": "progress", "segments_done": 4, "segments": 4, "fraction": 1.0}


def test_bag_is_apply_models_bag(tmp_path):
    model = tiny_bag(tmp_path)
    audio = song(2.0)
    got = np.stack([w for _, w in _torch_separator(model).run(audio, StemsRequest(stems=4, sample_rate=44100))])
    assert relative_error(got, reference(model, audio)) <= TOLERANCE


def test_stem_sets():
    four = ("drums", "bass", "other", "vocals")
    six = (*four, "guitar", "piano")
    assert stem_matrix(2, four) == (("vocals", "instrumental"), [[0, 0, 0, 1], [1, 1, 1, 0]])
    assert stem_matrix(4, six)[1][2] == [0, 0, 1, 0, 1, 1]  # guitar and piano fold into other
    assert stem_matrix(6, six)[0] == six
    with pytest.raises(StemsError, match="stems: 6 needs a 'guitar' source"):
        stem_matrix(6, four)


def test_pick_network(tiny4):
    four = describe(tiny4)
    six = type(four)(**(vars(four) | {"model": NETWORK_FOR_SOURCES[6], "sources": (*four.sources, "guitar", "piano")}))
    assert pick_network({"stems": four, "stems_6s": six}, 4).model == "stems"
    assert pick_network({"stems": four, "stems_6s": six}, 6).model == "stems_6s"
    assert pick_network({"stems_6s": six}, 2).model == "stems_6s"
    with pytest.raises(StemsError, match="stems: 6 needs a 6-source checkpoint"):
        pick_network({"stems": four}, 6)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{", "request"),
        (b"[4]", "request"),
        (b'{"stems": 3}', "stems"),
        (b'{"stems": true}', "stems"),
        (b'{"overlap": 0.9}', "overlap"),
        (b'{"sample_rate": 16000}', "sample_rate"),
        (b'{"stem": 4}', "request"),
    ],
)
def test_bad_requests_name_the_field(raw, field):
    with pytest.raises(StemsError, match=rf"^{field}:"):
        parse_request(raw, model_rates=(44100,))


def test_audio_checks():
    assert check_audio(np.zeros((2, 10), np.float64), 48000).dtype == np.float32
    for bad in (np.zeros((1, 100)), np.zeros((2, 0)), np.zeros(100), None):
        with pytest.raises(StemsError, match="^audio:"):
            check_audio(bad, 48000)
    with pytest.raises(StemsError, match="audio: .* longer than the 600 s limit"):
        check_audio(np.zeros((2, 600 * 44100 + 1), np.float32), 44100)
    with pytest.raises(StemsError, match="audio: contains NaN"):
        check_audio(np.full((2, 10), np.nan, np.float32), 48000)
