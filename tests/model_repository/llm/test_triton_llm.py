"""``lyricist`` and ``lm`` through a real tritonserver (tiny presets): gRPC streaming, ``generate_stream``, errors,
and concurrent requests sharing forward passes."""

from __future__ import annotations

import json
import queue
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from export.llm import add_llm_models, config_pbtxt
from model_repository.llm import music
from model_repository.llm.constraints import validate_plan
from tests.model_repository.llm.fake_openai import PLAN, FakeOpenAI

pytestmark = pytest.mark.triton

grpcclient = pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from model_repository.launcher.server import TritonServer, find_triton

    try:
        find_triton()
    except RuntimeError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")
    repo = tmp_path_factory.mktemp("llm-repo")
    add_llm_models(repo, preset="tiny")
    # A lyricist with neither weights nor endpoint: it must load and explain itself.
    (repo / "lyricist_off" / "1").mkdir(parents=True)
    shutil.copyfile(repo / "lyricist" / "1" / "model.py", repo / "lyricist_off" / "1" / "model.py")
    (repo / "lyricist_off" / "config.pbtxt").write_text(config_pbtxt("lyricist_off", target="cpu", parameters={}))
    # A lyricist served from an OpenAI-compatible endpoint named in its config.
    (repo / "lyricist_api" / "1").mkdir(parents=True)
    shutil.copyfile(repo / "lyricist" / "1" / "model.py", repo / "lyricist_api" / "1" / "model.py")
    log = tmp_path_factory.mktemp("llm-log") / "triton.log"
    with FakeOpenAI() as api:
        params = {"endpoint": api.base_url, "endpoint_model": "qwen-test", "endpoint_timeout_s": "10"}
        config = config_pbtxt("lyricist_api", target="cpu", parameters=params)
        (repo / "lyricist_api" / "config.pbtxt").write_text(config)
        with TritonServer(repo, log_path=log, env={"TRITONE_LYRICIST_ENDPOINT": ""}) as srv:
            srv.fake_api = api
            yield srv


def _input(payload: dict[str, Any]) -> Any:
    tensor = grpcclient.InferInput("request", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([json.dumps(payload).encode()], dtype=np.object_))
    return tensor


def stream_many(url: str, model: str, payloads: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], str | None]]:
    """Send every payload on one gRPC stream at once; per request: its events, or its error message."""
    client = grpcclient.InferenceServerClient(url)
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i, payload in enumerate(payloads):
            client.async_stream_infer(model, [_input(payload)], request_id=str(i), enable_empty_final_response=True)
        events: dict[str, list[dict[str, Any]]] = {str(i): [] for i in range(len(payloads))}
        errors: dict[str, str | None] = {}
        while len(errors) < len(payloads):
            result, error = results.get(timeout=120)
            if error is not None:
                # tritonclient does not tell which request an error belongs to: tests expecting errors send one.
                errors[next(r for r in events if r not in errors)] = error.message()
                continue
            response = result.get_response()
            data = result.as_numpy("event")
            if data is not None:
                events[response.id].append(json.loads(data[0]))
            if response.parameters["triton_final_response"].bool_param:
                errors[response.id] = None
    finally:
        client.stop_stream()
        client.close()
    return [(events[str(i)], errors[str(i)]) for i in range(len(payloads))]


def stream_one(url: str, model: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    return stream_many(url, model, [payload])[0]


# --------------------------------------------------------------------------------------------------------------------


THEMES = [
    ("周末骑单车去看海 风把白衬衫吹起来", "zh", 0),
    ("Weekend cycling to the sea", "en", 1),
    ("雨夜的霓虹", "zh", 5),
]


def test_lyricist_streams_valid_plans(server: Any) -> None:
    payloads = [{"theme": t, "language": lang, "seed": seed, "max_new_tokens": 240} for t, lang, seed in THEMES]
    results = stream_many(server.grpc_url, "lyricist", payloads)
    for (events, error), (_, language, _) in zip(results, THEMES, strict=True):
        assert error is None
        deltas, final = events[:-1], events[-1]
        assert final["type"] == "plan" and len(deltas) > 10 and all(e["type"] == "delta" for e in deltas)
        plan = final["plan"]
        keys = ("title", "lyrics", "caption", "bpm", "key_scale", "time_signature", "duration")
        assert validate_plan({k: plan[k] for k in keys}, duration_hint=220) == []
        assert plan["language"] == language
        plan_deltas = [e for e in deltas if e["stage"] == "plan"]
        assert plan_deltas[-1]["lyrics_so_far"].strip() == plan["lyrics"]


def test_expansion_only_for_short_themes(server: Any) -> None:
    short_theme, long_theme = "海边", "海" * 61  # seed 000: expansion is skipped only past 60 characters
    (short_events, e1), (long_events, e2) = stream_many(
        server.grpc_url,
        "lyricist",
        [
            {"theme": short_theme, "seed": 1, "max_new_tokens": 200},
            {"theme": long_theme, "seed": 1, "max_new_tokens": 200},
        ],
    )
    assert e1 is None and e2 is None
    assert short_events[-1]["usage"]["expanded"] is True and "expand" in short_events[-1]["usage"]["stages"]
    assert any(e.get("stage") == "expand" for e in short_events)
    assert long_events[-1]["usage"]["expanded"] is False and "expand" not in long_events[-1]["usage"]["stages"]
    assert not any(e.get("stage") == "expand" for e in long_events)


BAD = [
    ({"theme": ""}, "lyricist: field 'theme' must be a non-empty string"),
    ({"theme": "sea", "temperature": 5}, "lyricist: field 'temperature' must be a number in [0, 2] (got 5)"),
    ({"theme": "sea", "vocal_gender": "robot"}, "lyricist: field 'vocal_gender' must be one of male, female, any"),
    ({"theme": "x" * 2001}, "lyricist: field 'theme' must be a string of at most 2000 characters"),
]


def test_bad_requests_name_the_field_and_the_server_keeps_serving(server: Any) -> None:
    for payload, expected in BAD:
        events, error = stream_one(server.grpc_url, "lyricist", payload)
        assert events == [] and error is not None and expected in error
    events, error = stream_one(server.grpc_url, "lyricist", {"theme": "still alive?", "max_new_tokens": 160})
    assert error is None and events[-1]["type"] == "plan"


def test_unconfigured_lyricist_says_which_setting(server: Any) -> None:
    _, error = stream_one(server.grpc_url, "lyricist_off", {"theme": "sea"})
    assert error is not None and "lyricist: not configured:" in error
    assert "lyricist_dir" in error and "TRITONE_LYRICIST_ENDPOINT" in error


def test_lm_metadata_keeps_user_values(server: Any) -> None:
    events, error = stream_one(
        server.grpc_url, "lm", {"mode": "metadata", "caption": "ballad", "bpm": 64, "time_signature": "3/4", "seed": 2}
    )
    assert error is None
    meta = events[-1]["metadata"]
    assert meta["bpm"] == 64 and meta["time_signature"] == 3
    assert meta["key_scale"] in music.KEY_SCALES and music.DURATION_MIN <= meta["duration"] <= music.DURATION_MAX
    assert any(e.get("stage") == "metadata" for e in events[:-1])


def test_lm_thinking_codes(server: Any) -> None:
    events, error = stream_one(server.grpc_url, "lm", {"mode": "thinking", "caption": "pop", "duration": 12, "seed": 3})
    assert error is None
    final = events[-1]
    codes = [int(c) for c in final["audio_codes"].replace("<|audio_code_", " ").replace("|>", " ").split()]
    assert len(codes) == 60 and all(0 <= c < music.AUDIO_CODEBOOK_SIZE for c in codes)
    assert [e["stage"] for e in events[:-1]].count("codes") >= 2  # streamed in chunks before the result


def test_lm_bad_request(server: Any) -> None:
    _, error = stream_one(server.grpc_url, "lm", {"mode": "thinking", "bpm": 1000})
    assert error is not None and "lm: field 'bpm' must be an integer in [30, 300]" in error


def test_concurrent_requests_share_forward_passes(server: Any) -> None:
    payloads = [{"theme": f"夏天的海 第{i}首", "seed": i, "max_new_tokens": 200} for i in range(8)]
    results = stream_many(server.grpc_url, "lyricist", payloads)
    assert all(error is None for _, error in results)
    usages = [events[-1]["usage"] for events, _ in results]
    # The model's own counters: how many rows shared the decode steps of each request's plan.
    assert max(u["batch_rows_max"] for u in usages) >= 4, usages
    assert sum(u["batch_rows_mean"] for u in usages) / len(usages) > 1.5, usages


def test_generate_stream_endpoint(server: Any) -> None:
    url = f"http://{server.http_url}/v2/models/lyricist/generate_stream"
    body = {"request": json.dumps({"theme": "sea breeze", "language": "en", "seed": 4, "max_new_tokens": 200})}
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    events = [json.loads(json.loads(line)["event"]) for line in lines]
    assert events[0]["type"] == "delta" and events[-1]["type"] == "plan"
    assert events[-1]["plan"]["language"] == "en"
    with httpx.stream("POST", url, json={"request": json.dumps({"theme": "sea", "vocal_gender": "robot"})}) as bad:
        text = bad.read().decode()
    assert bad.status_code == 400 and "field 'vocal_gender'" in text


def test_lyricist_from_an_openai_compatible_endpoint(server: Any) -> None:
    events, error = stream_one(server.grpc_url, "lyricist_api", {"theme": "sea", "language": "en", "seed": 3})
    assert error is None
    final = events[-1]
    assert final["usage"]["backend"] == "endpoint" and final["plan"]["title"] == PLAN["title"]
    assert [e for e in events[:-1] if e["stage"] == "plan"][-1]["lyrics_so_far"] == PLAN["lyrics"]
    bodies = [r["body"] for r in server.fake_api.requests]
    assert bodies[-1]["model"] == "qwen-test" and bodies[-1]["stream"] is True and bodies[-1]["seed"] == 3


def test_cancelled_request_leaves_the_batch(server: Any) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    long_job = {"mode": "thinking", "bpm": 90, "key_scale": "C major", "time_signature": 4, "duration": 600}
    client.async_stream_infer("lm", [_input(long_job)], request_id="long")
    result, error = results.get(timeout=60)  # the first codes arrive: the job is in the batch
    assert error is None and json.loads(result.as_numpy("event")[0])["stage"] == "codes"
    client.stop_stream(cancel_requests=True)
    client.close()
    time.sleep(1.0)  # the model notices within CANCEL_CHECK_S and drops the job's rows
    events, error = stream_one(server.grpc_url, "lm", {**long_job, "duration": 10})
    assert error is None
    assert events[-1]["usage"]["phases"]["codes"]["batch_rows_max"] == 2  # alone: the 3000-code job is gone
