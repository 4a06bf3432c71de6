"""Lyric timing through the song API (in-process stage runner, ``doubles.py``): ``align_lyrics`` reaches the sampler,
each item's ``lrc``/``aligned_lyrics``/``alignment_score`` come back in the status, and its ``.lrc`` file beside the
audio downloads; without it the fields are null and the sampler is not asked."""

from __future__ import annotations

import io

from mutagen.flac import FLAC

from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_song


async def test_items_carry_their_timing_and_lrc_file(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        body = {"theme": "sea", "duration": 10, "inference_steps": 2, "batch_size": 2, "seed": 7,
                "align_lyrics": True, "generate_cover": False}
        created = await client.post("/v1/song/create", json=body, headers=headers)
        assert created.status_code == 200, created.text
        done = await wait_song(client, headers, created.json()["data"]["intent_id"], ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        for i, item in enumerate(done["items"]):
            assert item["alignment_score"] == 0.25
            assert item["aligned_lyrics"] == [{"word": "w", "start_s": float(i), "end_s": i + 0.5, "success": True,
                                               "p_align": 0.5}]
            assert item["lrc"].splitlines()[0] == "[Verse 1]" and f"[00:0{i}.00]sea line one" in item["lrc"]
            lrc = await client.get(item["lrc_url"])
            assert lrc.status_code == 200 and lrc.text == item["lrc"] + "\n"
            # the delivered FLAC carries the timed lyrics, title, seed and model (read back with mutagen)
            flac = FLAC(io.BytesIO((await client.get(item["audio_url"])).content))
            assert flac["LYRICS"] == [item["lrc"]] and flac["TITLE"] == [done["title"]]
            assert flac["ARTIST"] == ["Tritone"] and flac["COMMENT"][0].startswith(f"seed={item['seed']} model=")

        plain = await client.post("/v1/song/create", json=body | {"align_lyrics": False}, headers=headers)
        done = await wait_song(client, headers, plain.json()["data"]["intent_id"], ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        assert all(item["lrc"] is None and item["lrc_url"] is None for item in done["items"])
    sampled = [r for m, r in double.calls if m == "sampler"]
    assert sampled[0]["align_lyrics"] is True and sampled[1].get("align_lyrics") is None


async def test_the_acestep_result_and_query_result_carry_the_timing(tmp_path) -> None:
    import json

    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        body = {"prompt": "pop", "lyrics": "[Verse]\nhello there", "bpm": 90, "keyScale": "Am", "timesignature": "4",
                "audio_duration": 10, "inference_steps": 2, "batch_size": 2, "align_lyrics": True}
        r = await client.post("/release_task", json=body, headers=headers)
        assert r.status_code == 200, r.text
        task = r.json()["data"]["task_id"]

        async def finished():
            job = (await client.get(f"/v1/jobs/{task}", headers=headers)).json()
            return job if job["status"] in ("succeeded", "failed") else None

        from tests.orchestrator.support import wait_for

        job = await wait_for(finished, what="music job")
        assert job["status"] == "succeeded", job
        timing = job["result"]["alignment"]
        assert [t["alignment_score"] for t in timing] == [0.25, 0.25]
        assert timing[1]["lrc"] == "[Verse]\n[00:01.00]hello there" and timing[1]["lrc_url"]
        q = await client.post("/query_result", json={"task_id_list": json.dumps([task])}, headers=headers)
        files = json.loads(q.json()["data"][0]["result"])
        assert [f["lrc"] for f in files] == [t["lrc"] for t in timing]
        assert files[0]["aligned_lyrics"][0]["word"] == "w"
