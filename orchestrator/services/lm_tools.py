"""Upstream's LM-only routes, answered by the 5 Hz ``lm`` directly (no job): ``/format_input`` and
``/create_random_sample``. The request and the answer are the stages' own (``jobs/stages.py``: ``lm_request``,
``lm_answer``).

- format: with lyrics, the ``lm`` in ``metadata`` mode fills what is missing (bpm, key, time signature, duration,
  language; the caller's values win) and keeps the caption and lyrics; without lyrics, ``inspire`` mode writes them
  from the prompt.
- random sample: ``inspire`` mode from a drawn description and seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import ApiError
from orchestrator.families import DRAWN_SEED_RANGE
from orchestrator.services.jobs.stages import lm_answer, lm_request
from orchestrator.services.triton import ModelError, StageGateway, TritonUnavailableError
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

_RANDOM_DESCRIPTIONS = (
    "an upbeat synth-pop song about a summer night drive",
    "a melancholic acoustic ballad about leaving home",
    "a lo-fi hip hop track for studying on a rainy afternoon",
    "an energetic rock anthem about never giving up",
    "a dreamy indie folk song about the sea",
    "a funky disco tune about dancing until sunrise",
    "a cinematic orchestral piece with a hopeful choir",
    "a jazzy love song with brushed drums and upright bass",
)


async def ask_lm(gateway: StageGateway, settings: Settings, request: Mapping[str, Any]) -> dict[str, Any]:
    """One ``lm`` call: its result as one dict; the model's own error is a 422, an unreachable Triton a 503."""
    try:
        async with asyncio.timeout(settings.metadata_timeout_s):
            async with contextlib.aclosing(gateway.stream(settings.lm_model, request)) as events:
                async for event in events:
                    if event.type == "result":
                        return lm_answer(event.data)
    except ModelError as exc:
        raise ApiError(422, f"the LM refused the request: {exc.message}") from None
    except TritonUnavailableError as exc:
        raise ApiError(503, f"the LM is not reachable: {exc}") from None
    except TimeoutError:
        raise ApiError(504, f"the LM did not answer within {settings.metadata_timeout_s:g} s") from None
    raise ApiError(502, "the LM finished without a result")


def _known(bpm: int | None, key_scale: str, time_signature: str, duration: float | None) -> dict[str, Any]:
    return {
        "bpm": bpm,
        "key_scale": key_scale or None,
        "time_signature": (time_signature.split("/")[0].strip() or None) if time_signature else None,
        "duration": duration,
    }


async def format_input(
    gateway: StageGateway,
    settings: Settings,
    *,
    prompt: str,
    lyrics: str,
    bpm: int | None,
    key_scale: str,
    time_signature: str,
    duration: float | None,
    language: str,
    temperature: float,
) -> dict[str, Any]:
    """Upstream's ``/format_input`` answer: caption, lyrics, bpm, key_scale, time_signature, duration,
    vocal_language."""
    known = _known(bpm, key_scale, time_signature, duration)
    mode = "metadata" if lyrics.strip() else "inspire"
    extra = {"description": prompt or "a song"} if mode == "inspire" else None
    answer = await ask_lm(
        gateway,
        settings,
        lm_request(
            mode=mode, caption=prompt, lyrics=lyrics, known=known, language=language or "unknown",
            temperature=temperature, seed=secrets.randbelow(DRAWN_SEED_RANGE), extra=extra,
        ),
    )
    return {
        "caption": answer.get("caption") or prompt,
        "lyrics": answer.get("lyrics") or lyrics,
        "bpm": bpm or answer.get("bpm"),
        "key_scale": key_scale or answer.get("key_scale") or "",
        "time_signature": time_signature or str(answer.get("time_signature") or ""),
        "duration": duration or answer.get("duration"),
        "vocal_language": (language if language and language != "unknown" else answer.get("language")) or "unknown",
    }


async def random_sample(gateway: StageGateway, settings: Settings, *, language: str = "unknown") -> dict[str, Any]:
    """Upstream's ``/create_random_sample`` answer (its example fields), written by the LM from a drawn idea."""
    description = _RANDOM_DESCRIPTIONS[secrets.randbelow(len(_RANDOM_DESCRIPTIONS))]
    answer = await ask_lm(
        gateway,
        settings,
        lm_request(
            mode="inspire", caption="", lyrics="", known=_known(None, "", "", None), language=language,
            temperature=0.85, seed=secrets.randbelow(DRAWN_SEED_RANGE), extra={"description": description},
        ),
    )
    return {
        "think": True,
        "description": description,
        "caption": answer.get("caption") or description,
        "lyrics": answer.get("lyrics") or "",
        "bpm": answer.get("bpm"),
        "duration": answer.get("duration"),
        "keyscale": answer.get("key_scale") or "",
        "language": answer.get("language") or language,
        "timesignature": str(answer.get("time_signature") or ""),
    }
