"""One song request through the ACE-Step 1.5 networks: conditions → flow-matching loop → decode.

The runner never touches a model directly: every network evaluation goes through a ``NetworkCaller`` (in Triton, a BLS
request to ``dit``/``vae_decoder``/…, where the dynamic batcher merges it with other songs' calls; in benchmarks, ONNX
Runtime in-process). Songs keep their exact latent length; each call pads to the contract's length bucket with a mask,
so songs of similar length share a batch whatever step they are at.

The numerics follow diffusers' ``AceStepPipeline`` (prompt format, task instructions, chunk masks, silence latents,
seeded noise, APG, Euler steps, loudness), which the end-to-end test checks on the tiny preset.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import AceStepPipeline
from diffusers.pipelines.ace_step.pipeline_ace_step import (
    TASK_INSTRUCTIONS,
    _normalize_audio_codes,
    _parse_audio_code_string,
)

from model_repository import acestep15_sampling as sampling
from model_repository.sampler_request import MAX_SEED, RequestError, SamplerRequest

logger = logging.getLogger(__name__)

# Must match export.acestep15.networks (the contracts the networks were exported with); read from pipeline.json.
MAX_TEXT_TOKENS = 256
MAX_LYRIC_TOKENS = 2048
TIMBRE_FRAMES = 750
DEFAULT_STEPS = {True: 8, False: 50}


class NetworkCaller(Protocol):
    def __call__(
        self, model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]: ...


class Cancelled(RuntimeError):
    pass


@dataclass
class VersionSet:
    name: str
    versions: dict[str, str]
    is_turbo: bool
    tokenizer: Any
    null_condition_emb: np.ndarray  # [1, 1, H]
    silence_latent: np.ndarray  # [N, C]


def bucket(size: int, buckets: list[int]) -> int:
    for b in buckets:
        if b >= size:
            return b
    raise RequestError(f"sampler: a length of {size} exceeds the largest bucket {buckets[-1]}")


class Assets:
    """pipeline.json plus each version set's tokenizer and tensors, loaded once and shared by all songs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = json.loads((self.root / "pipeline.json").read_text())
        self.dims: dict[str, Any] = self.manifest["dims"]
        self.buckets: dict[str, list[int]] = self.manifest["buckets"]
        self._sets: dict[str, VersionSet] = {}
        self._lock = threading.Lock()

    @property
    def frames_per_second(self) -> float:
        return self.dims["sample_rate"] / self.dims["samples_per_frame"]

    @property
    def codebook_size(self) -> int:
        return int(self.dims["codebook_size"])

    def version_set(self, name: str | None) -> VersionSet:
        name = name or self.manifest["default_version_set"]
        sets = self.manifest["version_sets"]
        if name not in sets:
            raise RequestError(f"sampler: field 'version_set' must be one of {sorted(sets)}, got {name!r}")
        with self._lock:
            if name not in self._sets:
                from transformers import AutoTokenizer

                folder = self.root / name
                self._sets[name] = VersionSet(
                    name=name,
                    versions=dict(sets[name]["versions"]),
                    is_turbo=bool(sets[name]["is_turbo"]),
                    tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
                    null_condition_emb=np.load(folder / "null_condition_emb.npy"),
                    silence_latent=np.load(folder / "silence_latent.npy"),
                )
            return self._sets[name]


class SongRunner:
    def __init__(self, assets: Assets, call: NetworkCaller) -> None:
        self.assets = assets
        self.call = call

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _silence(self, vs: VersionSet, frames: int) -> np.ndarray:
        s = vs.silence_latent
        reps = -(-frames // s.shape[0])
        return np.tile(s, (reps, 1))[:frames]

    def _encode_audio(self, versions: dict[str, str], audio: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """48 kHz stereo [2, S] -> sampled posterior latents [T, C] (mean + std * noise, noise from the seed)."""
        out = self.call(
            "vae_encoder",
            versions["vae_encoder"],
            {"audio": audio[None].astype(np.float32)},
            ["latent_mean", "latent_std"],
        )
        mean, std = torch.from_numpy(out["latent_mean"][0]), torch.from_numpy(out["latent_std"][0])
        return (mean + std * torch.randn(mean.shape, generator=generator)).numpy()

    def _reference_latents(self, vs: VersionSet, versions: dict[str, str], ref: np.ndarray | None, gen) -> np.ndarray:
        if ref is None:
            return self._silence(vs, TIMBRE_FRAMES)
        # Three 10 s windows (front, middle, back) of the reference, repeated first if shorter than 30 s.
        sr = int(self.assets.dims["sample_rate"])
        target = 30 * sr
        if ref.shape[-1] < target:
            ref = np.tile(ref, (1, math.ceil(target / ref.shape[-1])))
        seg, total = 10 * sr, ref.shape[-1]
        mid = total // 3
        back = max(total - seg, 0)
        clip = np.concatenate([ref[:, :seg], ref[:, mid : mid + seg], ref[:, back : back + seg]], axis=-1)
        return self._encode_audio(versions, clip, gen)[:TIMBRE_FRAMES]

    def _conditions(
        self, vs: VersionSet, versions: dict[str, str], text: str, lyrics: str, refer: np.ndarray
    ) -> np.ndarray:
        """Caption + lyrics + timbre -> the packed cross-attention sequence [1, n_valid, H] (padding removed)."""
        tok = vs.tokenizer
        text_ids = tok(text, truncation=True, max_length=MAX_TEXT_TOKENS).input_ids
        lyric_ids = tok(lyrics, truncation=True, max_length=MAX_LYRIC_TOKENS).input_ids
        tb, lb = (
            bucket(len(text_ids), self.assets.buckets["text"]),
            bucket(len(lyric_ids), self.assets.buckets["lyric"]),
        )
        pad = tok.pad_token_id
        text_arr = np.full((1, tb), pad, np.int64)
        text_arr[0, : len(text_ids)] = text_ids
        lyric_arr = np.full((1, lb), pad, np.int64)
        lyric_arr[0, : len(lyric_ids)] = lyric_ids
        enc = self.call(
            "text_encoder",
            versions["text_encoder"],
            {"text_input_ids": text_arr, "lyric_input_ids": lyric_arr},
            ["text_hidden_states", "lyric_hidden_states"],
        )
        text_mask = (np.arange(tb) < len(text_ids)).astype(np.int64)[None]
        lyric_mask = (np.arange(lb) < len(lyric_ids)).astype(np.int64)[None]
        cond = self.call(
            "condition_encoder",
            versions["condition_encoder"],
            {
                "text_hidden_states": enc["text_hidden_states"],
                "text_attention_mask": text_mask,
                "lyric_hidden_states": enc["lyric_hidden_states"],
                "lyric_attention_mask": lyric_mask,
                "refer_audio_latents": refer[None].astype(np.float32),
            },
            ["encoder_hidden_states", "encoder_attention_mask"],
        )
        n_valid = int(cond["encoder_attention_mask"][0].sum())
        return cond["encoder_hidden_states"][:, :n_valid]

    def _velocity(
        self,
        versions: dict[str, str],
        x: torch.Tensor,
        t: float,
        encoder: np.ndarray,
        context: np.ndarray,
    ) -> torch.Tensor:
        """One DiT evaluation for these rows, padded to the frame and encoder buckets with masks."""
        rows, frames, channels = x.shape
        fb = bucket(frames, self.assets.buckets["frames"])
        eb = bucket(encoder.shape[1], self.assets.buckets["encoder"])
        hidden = np.zeros((rows, fb, channels), np.float32)
        hidden[:, :frames] = x.numpy()
        ctx = np.zeros((rows, fb, context.shape[-1]), np.float32)
        ctx[:, :frames] = context
        enc = np.zeros((rows, eb, encoder.shape[-1]), np.float32)
        enc[:, : encoder.shape[1]] = encoder
        latent_mask = np.zeros((rows, fb), np.int64)
        latent_mask[:, :frames] = 1
        enc_mask = np.zeros((rows, eb), np.int64)
        enc_mask[:, : encoder.shape[1]] = 1
        ts = np.full((rows, 1), t, np.float32)
        out = self.call(
            "dit",
            versions["dit"],
            {
                "hidden_states": hidden,
                "timestep": ts,
                "timestep_r": ts,
                "encoder_hidden_states": enc,
                "encoder_attention_mask": enc_mask,
                "context_latents": ctx,
                "latent_mask": latent_mask,
            },
            ["velocity"],
        )
        return torch.from_numpy(np.ascontiguousarray(out["velocity"][:, :frames]))

    # ---- the request -------------------------------------------------------------------------------------------------
    def run(
        self,
        req: SamplerRequest,
        *,
        src_audio: np.ndarray | None = None,
        reference_audio: np.ndarray | None = None,
        progress: Callable[[dict[str, Any]], None] = lambda event: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
        """Returns (audio [B, 2, S] float32 at 48 kHz, the seeds used, generation info)."""
        assets = self.assets
        vs = assets.version_set(req.version_set)
        versions = dict(vs.versions)
        if req.versions:
            unknown = sorted(set(req.versions) - set(versions))
            if unknown:
                raise RequestError(
                    f"sampler: field 'versions' names unknown model(s) {unknown}; known {sorted(versions)}"
                )
            versions.update(req.versions)
        fps = assets.frames_per_second
        batch = req.batch_size
        seeds = list(req.seeds or []) + [secrets.randbelow(MAX_SEED + 1) for _ in range(batch - len(req.seeds or []))]
        # Turbo checkpoints have guidance distilled in: guidance is off whatever the request says (as in diffusers).
        guidance_scale = 1.0 if vs.is_turbo else req.guidance_scale
        do_cfg = guidance_scale > 1.0
        steps = req.inference_steps or DEFAULT_STEPS[vs.is_turbo]

        task = req.task_type
        codes = _normalize_audio_codes(req.audio_codes, batch) if req.audio_codes else []
        if codes and task == "text2music":
            task = "cover"
        instruction = req.instruction or AceStepPipeline._get_task_instruction(
            task_type=task, track_name=req.track_name, complete_track_classes=req.complete_track_classes
        )
        duration = req.duration
        parsed_codes = [_parse_audio_code_string(c, assets.codebook_size - 1) for c in codes]
        pool = int(assets.dims["pool_window"])
        if codes and not duration:
            duration = max(len(c) for c in parsed_codes) * pool / fps
        if src_audio is not None and not duration:
            duration = src_audio.shape[-1] / float(assets.dims["sample_rate"])
        duration = duration or 60.0
        frames = sampling.latent_frames(duration, fps)
        progress({"type": "progress", "stage": "encode", "step": 0, "total": steps})

        generator = torch.Generator().manual_seed(seeds[0])
        text, lyrics = _format_prompt(req, duration=duration, instruction=instruction)
        refer = self._reference_latents(vs, versions, reference_audio, generator)
        encoder = self._conditions(vs, versions, text, lyrics, refer)
        non_cover = None
        if task == "cover" and req.audio_cover_strength < 1.0:
            nc_text, nc_lyrics = _format_prompt(req, duration=duration, instruction=TASK_INSTRUCTIONS["text2music"])
            non_cover = self._conditions(vs, versions, nc_text, nc_lyrics, refer)

        src, frames = self._source_latents(vs, versions, task, parsed_codes, src_audio, frames, generator, batch)
        chunk = _chunk_mask(task, req, frames, fps, has_src=src_audio is not None)
        if task == "repaint" and src_audio is not None:
            src = np.where(chunk[..., None] > 0.5, self._silence(vs, frames)[None], src)
        channels = src.shape[-1]
        chunk_rows = np.broadcast_to(chunk[..., None], (batch, frames, channels))
        context = np.concatenate([src, chunk_rows], axis=-1).astype(np.float32)

        latents = torch.cat(
            [torch.randn((1, frames, channels), generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
        sigmas = sampling.timestep_schedule(steps, req.shift, req.timesteps)
        scheduler = sampling.make_scheduler(sigmas)
        momentum = sampling.new_momentum() if do_cfg else None
        cond_rows = np.repeat(encoder, batch, axis=0)
        null_rows = np.broadcast_to(vs.null_condition_emb, cond_rows.shape)
        total = len(scheduler.timesteps)
        for step, t_sched in enumerate(scheduler.timesteps):
            if cancelled():
                raise Cancelled("sampler: request cancelled")
            t = float(t_sched)
            if do_cfg and sampling.cfg_active(t, req.cfg_interval_start, req.cfg_interval_end):
                v = self._velocity(
                    versions,
                    torch.cat([latents, latents]),
                    t,
                    np.concatenate([cond_rows, null_rows]),
                    np.concatenate([context, context]),
                )
                v_cond, v_uncond = v.chunk(2)
                if req.use_adg:
                    vt = sampling.adg(latents, v_cond, v_uncond, t, guidance_scale)
                else:
                    assert momentum is not None
                    vt = sampling.apg(v_cond, v_uncond, guidance_scale, momentum)
            else:
                vt = self._velocity(versions, latents, t, cond_rows, context)
            if non_cover is not None:
                v_nc = self._velocity(versions, latents, t, np.repeat(non_cover, batch, axis=0), context)
                vt = req.audio_cover_strength * vt + (1.0 - req.audio_cover_strength) * v_nc
            latents = scheduler.step(vt, t_sched, latents, return_dict=False)[0]
            progress({"type": "progress", "stage": "diffusion", "step": step + 1, "total": total})

        progress({"type": "progress", "stage": "decode", "step": total, "total": total})
        decoded = self.call("vae_decoder", versions["vae_decoder"], {"latents": latents.numpy()}, ["audio"])
        audio = sampling.normalize_audio(torch.from_numpy(decoded["audio"])).numpy()
        info = {
            "versions": versions,
            "version_set": vs.name,
            "task_type": task,
            "steps": total,
            "guidance_scale": guidance_scale,
            "shift": req.shift,
            "duration": frames / fps,
            "use_adg": req.use_adg,
        }
        return audio, seeds, info

    def _source_latents(
        self,
        vs: VersionSet,
        versions: dict[str, str],
        task: str,
        parsed_codes: list[list[int]],
        src_audio: np.ndarray | None,
        frames: int,
        generator: torch.Generator,
        batch: int,
    ) -> tuple[np.ndarray, int]:
        """[B, T, C] source latents and the final length T."""
        pool = int(self.assets.dims["pool_window"])
        if parsed_codes:
            width = max(len(c) for c in parsed_codes)
            ids = np.zeros((batch, width), np.int64)
            for i, c in enumerate(parsed_codes):
                ids[i, : len(c)] = c
            out = self.call("audio_detokenizer", versions["audio_detokenizer"], {"audio_codes": ids}, ["latents"])
            return out["latents"], out["latents"].shape[1]
        if src_audio is not None:
            latents = self._encode_audio(versions, src_audio, generator)
            frames = latents.shape[0]
            if task == "cover":
                pad = (-frames) % pool
                padded = np.concatenate([latents, vs.silence_latent[:pad]]) if pad else latents
                windows = padded.reshape(1, -1, pool, padded.shape[-1]).astype(np.float32)
                ids = self.call("audio_tokenizer", versions["audio_tokenizer"], {"latents": windows}, ["audio_codes"])
                out = self.call(
                    "audio_detokenizer", versions["audio_detokenizer"], {"audio_codes": ids["audio_codes"]}, ["latents"]
                )
                latents = out["latents"][0, :frames]
            return np.repeat(latents[None], batch, axis=0), frames
        return np.repeat(self._silence(vs, frames)[None], batch, axis=0), frames


def _format_prompt(req: SamplerRequest, *, duration: float, instruction: str) -> tuple[str, str]:
    # diffusers' formatter only reads its static metadata helper from `self`, so the class serves as `self`.
    return AceStepPipeline._format_prompt(
        AceStepPipeline,  # type: ignore[arg-type]
        prompt=req.caption,
        lyrics=req.lyrics,
        vocal_language=req.vocal_language,
        audio_duration=duration,
        instruction=instruction,
        bpm=req.bpm,
        keyscale=req.key_scale,
        timesignature=req.time_signature,
    )


def _chunk_mask(task: str, req: SamplerRequest, frames: int, fps: float, *, has_src: bool) -> np.ndarray:
    """[1, T]: 1 where the DiT generates, 0 where it keeps the source (repaint/lego windows)."""
    mask = np.ones((1, frames), np.float32)
    if task in ("repaint", "lego") and has_src:
        start = int((req.repainting_start or 0.0) * fps)
        end = int(req.repainting_end * fps) if req.repainting_end is not None and req.repainting_end > 0 else frames
        start = max(0, min(start, frames - 1))
        end = max(start + 1, min(end, frames))
        mask[:] = 0.0
        mask[0, start:end] = 1.0
    return mask
