"""An edit that starts from the latents its source was decoded from (``src_latents``, a clip's): the sampler uses
them as they are and does not encode the source audio again; wrong shapes are refused naming the input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.model_repository.streaming import batch_counts, stream

REPAINT = {"task_type": "repaint", "repainting_start": 2.0, "repainting_end": 5.0, "inference_steps": 2, "seeds": [1]}


@pytest.mark.triton
def test_an_edit_starts_from_the_given_latents_without_encoding_the_audio(triton):
    made = stream(triton.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2, "seeds": [4]},
                  outputs=("audio", "latents"))
    assert made.error is None, made.error
    shape = made.final["latent_shape"]
    latents = made.outputs["latents"].reshape(-1, *shape)[0]
    audio = made.outputs["audio"][0]
    assert shape[0] == 250 and np.isfinite(latents).all()  # 10 s at 25 latent frames per second

    before = batch_counts(triton, "vae_encoder")
    given = stream(triton.grpc_url, "sampler", REPAINT, tensors={"src_audio": audio, "src_latents": latents})
    assert given.error is None, given.error
    assert batch_counts(triton, "vae_encoder") == before  # the source was not encoded again
    assert given.outputs["audio"].shape == audio[None].shape
    encoded = stream(triton.grpc_url, "sampler", REPAINT, tensors={"src_audio": audio})
    assert encoded.error is None and batch_counts(triton, "vae_encoder")[0] > before[0]  # audio alone is encoded
    assert not np.allclose(given.outputs["audio"], encoded.outputs["audio"])  # exact latents vs a posterior sample

    for tensors, words in (
        ({"src_audio": audio, "src_latents": latents[:, :3]}, "src_latents"),
        ({"src_latents": latents}, "src_latents"),
        ({"src_audio": audio, "src_latents": latents[None]}, "src_latents"),
    ):
        bad = stream(triton.grpc_url, "sampler", REPAINT, tensors=tensors)
        assert bad.error is not None and words in bad.error, bad.error
