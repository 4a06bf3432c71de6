"""The continuous-batching engine: batching (decode steps and prefill) must not change results, and concurrent jobs
must share forward passes."""

from __future__ import annotations

import pytest
import torch

from model_repository.llm.batch_cache import prefill
from model_repository.llm.engine import Engine, Job, Stream
from model_repository.llm.local import LocalModel
from model_repository.llm.requests import Sampling
from model_repository.llm.serving import batch_prefill

GREEDY = Sampling(temperature=0.0)


def prompts(model: LocalModel) -> list[list[int]]:
    texts = ["hello", "周末骑单车去看海 风把白衬衫吹起来", "the weekend wind and the sea " * 4, "x"]
    return [
        model.encode(model.render_chat([{"role": "user", "content": t}], add_generation_prompt=True)) for t in texts
    ]


@pytest.fixture(scope="module")
def engine(lyricist_model: LocalModel):
    engine = Engine(lyricist_model.model, max_rows=8, name="test")
    yield engine
    engine.close()


def test_batched_greedy_equals_one_at_a_time(engine: Engine, lyricist_model: LocalModel) -> None:
    ps = prompts(lyricist_model)
    alone = [engine.submit(Job(p, 24, GREEDY)).result().tokens for p in ps]
    # Different lengths, submitted together: they join one batch with left-padded caches.
    streams = [engine.submit(Job(p, 24 + 4 * i, GREEDY)) for i, p in enumerate(ps)]
    together = [s.result() for s in streams]
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert b.tokens[:24] == a, f"prompt {i} changed when batched"
    assert max(r.batch_rows_max for r in together) >= 2
    assert together[-1].finish_reason == "length" and len(together[-1].tokens) == 36


def test_concurrent_jobs_share_forward_passes(engine: Engine, lyricist_model: LocalModel) -> None:
    before = dict(engine.stats)
    streams = [engine.submit(Job(prompts(lyricist_model)[i % 4], 30, Sampling(seed=i))) for i in range(8)]
    results = [s.result() for s in streams]
    steps = engine.stats["decode_steps"] - before["decode_steps"]
    generated = sum(len(r.tokens) for r in results)
    # One at a time this would take ~8 x 29 decode steps; batched, far fewer.
    assert steps < generated / 3, (steps, generated)
    assert max(r.batch_rows_max for r in results) == 8


def test_seeded_sampling_is_reproducible_and_seed_sensitive(engine: Engine, lyricist_model: LocalModel) -> None:
    p = prompts(lyricist_model)[1]
    a = engine.submit(Job(p, 20, Sampling(temperature=1.0, seed=5))).result().tokens
    b = engine.submit(Job(p, 20, Sampling(temperature=1.0, seed=5))).result().tokens
    c = engine.submit(Job(p, 20, Sampling(temperature=1.0, seed=6))).result().tokens
    assert a == b and a != c


def test_cfg_uses_two_rows_and_guides_the_logits(engine: Engine, lyricist_model: LocalModel) -> None:
    cond, uncond = prompts(lyricist_model)[1], prompts(lyricist_model)[0]
    guided = engine.submit(Job(cond, 4, GREEDY, uncond_prompt_ids=uncond, cfg_scale=3.0)).result()
    assert guided.batch_rows_max == 2
    with torch.inference_mode():
        c = lyricist_model.model(input_ids=torch.tensor([cond])).logits[0, -1].float()
        u = lyricist_model.model(input_ids=torch.tensor([uncond])).logits[0, -1].float()
    assert guided.tokens[0] == int(torch.argmax(u + 3.0 * (c - u)))
    sampled = Sampling(temperature=1.0, seed=11)
    plain = engine.submit(Job(cond, 16, sampled)).result().tokens
    with_cfg = engine.submit(Job(cond, 16, sampled, uncond_prompt_ids=uncond, cfg_scale=3.0)).result().tokens
    assert plain != with_cfg


def test_stop_tokens_and_cancel(engine: Engine, lyricist_model: LocalModel) -> None:
    p = prompts(lyricist_model)[0]
    first = engine.submit(Job(p, 5, GREEDY)).result().tokens[0]
    stopped = engine.submit(Job(p, 5, GREEDY, stop_ids=frozenset({first}))).result()
    assert stopped.finish_reason == "stop" and stopped.tokens == []
    stream = engine.submit(Job(p, 10_000, Sampling(seed=1)))
    for i, _ in enumerate(stream):
        if i == 3:
            stream.cancel()
    assert stream.result().finish_reason == "cancelled"
    assert len(stream.result().tokens) < 50


def submit_together(engine: Engine, jobs: list[Job]) -> list[Stream]:
    """Submit ``jobs`` so they are all waiting when the loop next admits (the engine's condition is reentrant)."""
    with engine._cv:
        return [engine.submit(job) for job in jobs]


def mixed_jobs(model: LocalModel) -> list[Job]:
    """Prompts of different lengths plus a CFG pair whose two prompts differ in length too."""
    ps = prompts(model)
    cfg = Job(ps[1], 12, GREEDY, uncond_prompt_ids=ps[3], cfg_scale=2.5)
    return [Job(ps[0], 12, GREEDY), Job(ps[2], 12, GREEDY), cfg, Job(ps[3], 12, GREEDY)]


@pytest.mark.parametrize("max_prefill_tokens", [8192, 64])
def test_prefill_together_equals_prefill_alone(lyricist_model: LocalModel, max_prefill_tokens: int) -> None:
    serial = Engine(lyricist_model.model, max_rows=8, name="serial", batch_prefill=False)
    batched = Engine(lyricist_model.model, max_rows=8, name="batched", max_prefill_tokens=max_prefill_tokens)
    try:
        jobs = mixed_jobs(lyricist_model)
        alone = [serial.submit(job).result().tokens for job in jobs]  # one job at a time, nothing shared
        before = dict(batched.stats)
        together = [s.result() for s in submit_together(batched, mixed_jobs(lyricist_model))]
        passes = batched.stats["prefill_passes"] - before["prefill_passes"]
        assert batched.stats["prefills"] - before["prefills"] == 5  # 3 plain prompts + a CFG pair
        if max_prefill_tokens == 8192:
            assert passes == 1, "the four waiting jobs should share one prefill pass"
        else:
            assert 1 < passes < 5, f"a 64-token budget splits the prefill, got {passes} passes"
        for i, (a, b) in enumerate(zip(alone, together, strict=True)):
            assert b.tokens == a, f"job {i} changed when prefilled together"
            assert b.finish_reason == "length"
        # Serial mode: the same jobs arriving together take one pass per prompt.
        before = dict(serial.stats)
        serial_together = [s.result().tokens for s in submit_together(serial, mixed_jobs(lyricist_model))]
        assert serial.stats["prefill_passes"] - before["prefill_passes"] == 5
        assert serial_together == alone
    finally:
        serial.close()
        batched.close()


def test_padded_prefill_matches_alone_and_zeroes_padding(lyricist_model: LocalModel) -> None:
    ps = prompts(lyricist_model)
    device = torch.device("cpu")
    with torch.inference_mode():
        together = prefill(lyricist_model.model, ps, device)
        width = max(len(p) for p in ps)
        assert together.mask.shape == (len(ps), width)
        for i, p in enumerate(ps):
            alone = prefill(lyricist_model.model, [p], device)
            torch.testing.assert_close(together.logits[i], alone.logits[0], rtol=1e-4, atol=1e-4)
            pad = width - len(p)
            assert int(together.mask[i].sum()) == len(p) and not bool(together.mask[i, :pad].any())
            for layer, alone_layer in zip(together.cache.layers, alone.cache.layers, strict=True):
                assert not bool(layer.keys[i, :, :pad].any()) and not bool(layer.values[i, :, :pad].any())
                torch.testing.assert_close(layer.keys[i, :, pad:], alone_layer.keys[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="non-empty prompts"):
        prefill(lyricist_model.model, [ps[0], []], device)


def test_prefill_config_parameter() -> None:
    assert batch_prefill({}) is True
    assert batch_prefill({"prefill": "Serial"}) is False
    with pytest.raises(ValueError, match="prefill='bulk'.*'batched'"):
        batch_prefill({"prefill": "bulk"})
    with pytest.raises(ValueError, match="max_prefill_tokens=0"):
        Engine(torch.nn.Linear(1, 1), max_prefill_tokens=0)
