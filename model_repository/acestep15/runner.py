"""One song request through the ACE-Step 1.5 networks: conditions → flow-matching loop → decode.

The runner never touches a model directly: :meth:`SongRunner.steps` is a generator that yields every network
evaluation as a :class:`~model_repository.sampler.protocol.NetworkRequest` (in Triton the step scheduler batches the
requests of all active songs into one BLS call per network and shape; ``run`` answers them one by one, in benchmarks
and tests through ONNX Runtime in-process). Songs keep their exact latent length; each request pads to the contract's
length bucket with a mask, so songs of similar length share a batch whatever step they are at.

The numerics follow diffusers' ``AceStepPipeline`` (prompt format, task instructions, chunk masks, silence latents,
seeded noise, APG, Euler steps, loudness), which the end-to-end test checks on the tiny preset.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
from diffusers import AceStepPipeline
from diffusers.pipelines.ace_step.pipeline_ace_step import (
    TASK_INSTRUCTIONS,
    _normalize_audio_codes,
    _parse_audio_code_string,
)

from model_repository.acestep15 import alignment, lyric_timing, sampling
from model_repository.acestep15.assets import Assets, VersionSet
from model_repository.facts.families import ACESTEP15, ACESTEP15_FACTS, MAX_BATCH
from model_repository.sampler.assets import RunnerBase
from model_repository.sampler.protocol import (
    Calls,
    IsCancelled,
    Progress,
    SongSteps,
    bucket,
    check_cancelled,
    fill_seeds,
    network,
    resolve_versions,
)
from model_repository.sampler.request import RequestError, SamplerRequest

logger = logging.getLogger(__name__)

FAMILY = ACESTEP15


class SongRunner(RunnerBase[Assets]):
    """The ACE-Step 1.5 family runner (:class:`~model_repository.sampler.protocol.FamilyRunner`)."""

    family = FAMILY
    assets_type = Assets

    def parse_limits(self) -> dict[str, Any]:
        return {"codebook_size": self.assets.codebook_size}

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _silence(self, vs: VersionSet, frames: int) -> np.ndarray:
        s = vs.silence_latent
        reps = -(-frames // s.shape[0])
        return np.tile(s, (reps, 1))[:frames]

    def _encode_audio(
        self, versions: dict[str, str], audio: np.ndarray, generator: torch.Generator
    ) -> Calls[np.ndarray]:
        """48 kHz stereo [2, S] -> sampled posterior latents [T, C] (mean + std * noise, noise from the seed)."""
        out = yield from network(
            "vae_encoder",
            versions["vae_encoder"],
            {"audio": audio[None].astype(np.float32)},
            ["latent_mean", "latent_std"],
            "encode",
        )
        mean, std = torch.from_numpy(out["latent_mean"][0]), torch.from_numpy(out["latent_std"][0])
        return (mean + std * torch.randn(mean.shape, generator=generator)).numpy()

    def _reference_latents(
        self, vs: VersionSet, versions: dict[str, str], ref: np.ndarray | None, gen: torch.Generator
    ) -> Calls[np.ndarray]:
        if ref is None:
            return self._silence(vs, self.assets.timbre_frames)
        # Three 10 s windows (front, middle, back) of the reference, repeated first if shorter than 30 s.
        sr = int(self.assets.dims["sample_rate"])
        target = 30 * sr
        if ref.shape[-1] < target:
            ref = np.tile(ref, (1, math.ceil(target / ref.shape[-1])))
        seg, total = 10 * sr, ref.shape[-1]
        mid = total // 3
        back = max(total - seg, 0)
        clip = np.concatenate([ref[:, :seg], ref[:, mid : mid + seg], ref[:, back : back + seg]], axis=-1)
        latents = yield from self._encode_audio(versions, clip, gen)
        return latents[: self.assets.timbre_frames]

    def _rows(
        self, model: str, versions: dict[str, str], inputs: dict[str, np.ndarray], outputs: list[str], stage: Any
    ) -> Calls[dict[str, np.ndarray]]:
        """One call per ``MAX_BATCH`` rows (the encoders' and the decoder's ``max_batch_size``), outputs joined: a
        track batch holds up to 12 items."""
        total = next(iter(inputs.values())).shape[0]
        parts = []
        for start in range(0, total, MAX_BATCH):
            chunk = {name: value[start : start + MAX_BATCH] for name, value in inputs.items()}
            parts.append((yield from network(model, versions[model], chunk, outputs, stage)))
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in outputs}

    def _conditions(
        self, vs: VersionSet, versions: dict[str, str], texts: list[str], lyrics: str, refer: np.ndarray
    ) -> Calls[tuple[np.ndarray, list[int]]]:
        """Captions (one per row) + lyrics + timbre -> the packed cross-attention rows [R, S, H] (zero past each
        row's length, S the longest) and each row's length."""
        tok = vs.tokenizer
        text_ids = [tok(text, truncation=True, max_length=self.assets.max_text_tokens).input_ids for text in texts]
        lyric_ids = tok(lyrics, truncation=True, max_length=self.assets.max_lyric_tokens).input_ids
        text_lengths = np.array([len(ids) for ids in text_ids])
        tb, lb = (
            bucket(int(text_lengths.max()), self.assets.buckets["text"], "field 'caption'", FAMILY),
            bucket(len(lyric_ids), self.assets.buckets["lyric"], "field 'lyrics'", FAMILY),
        )
        rows, pad = len(texts), tok.pad_token_id
        text_arr = np.full((rows, tb), pad, np.int64)
        for row, ids in enumerate(text_ids):
            text_arr[row, : len(ids)] = ids
        lyric_arr = np.full((rows, lb), pad, np.int64)
        lyric_arr[:, : len(lyric_ids)] = lyric_ids
        enc = yield from self._rows(
            "text_encoder",
            versions,
            {"text_input_ids": text_arr, "lyric_input_ids": lyric_arr},
            ["text_hidden_states", "lyric_hidden_states"],
            "encode",
        )
        text_mask = (np.arange(tb)[None] < text_lengths[:, None]).astype(np.int64)
        lyric_mask = np.repeat((np.arange(lb) < len(lyric_ids)).astype(np.int64)[None], rows, axis=0)
        cond = yield from self._rows(
            "condition_encoder",
            versions,
            {
                "text_hidden_states": enc["text_hidden_states"],
                "text_attention_mask": text_mask,
                "lyric_hidden_states": enc["lyric_hidden_states"],
                "lyric_attention_mask": lyric_mask,
                "refer_audio_latents": np.repeat(refer[None].astype(np.float32), rows, axis=0),
            },
            ["encoder_hidden_states", "encoder_attention_mask"],
            "encode",
        )
        lengths = [int(n) for n in cond["encoder_attention_mask"].sum(axis=1)]
        hidden = np.array(cond["encoder_hidden_states"][:, : max(lengths)])
        for row, n in enumerate(lengths):
            hidden[row, n:] = 0.0
        return hidden, lengths

    def _velocity(
        self,
        versions: dict[str, str],
        x: torch.Tensor,
        t: float,
        encoder: np.ndarray,
        context: np.ndarray,
        lengths: list[int],
    ) -> Calls[torch.Tensor]:
        """One DiT evaluation for these rows, padded to the frame and encoder buckets with masks (``lengths``: each
        row's encoder length)."""
        frames = x.shape[1]
        inputs = lyric_timing.dit_inputs(self.assets.buckets, x.numpy(), t, encoder, context, encoder_lengths=lengths)
        out = yield from network("dit", versions["dit"], inputs, ["velocity"])
        return torch.from_numpy(np.ascontiguousarray(out["velocity"][:, :frames]))

    # ---- the request -------------------------------------------------------------------------------------------------
    def steps(
        self,
        req: SamplerRequest,
        *,
        src_audio: np.ndarray | None = None,
        reference_audio: np.ndarray | None = None,
        src_latents: np.ndarray | None = None,
        progress: Progress = lambda event: None,
        cancelled: IsCancelled = lambda: False,
    ) -> SongSteps:
        """The song as a generator of network requests; returns (audio, seeds, info) as :meth:`run` does."""
        assets = self.assets
        vs = assets.version_set(req.version_set)
        refusal = ACESTEP15_FACTS.variant_refusal(
            req.task_type, version_set=vs.name, variant=vs.kind, is_turbo=vs.is_turbo, served=assets.set_kinds()
        )
        if refusal:
            raise RequestError(f"sampler: field 'task_type': {refusal}")
        versions = resolve_versions(req, vs.versions)
        fps = assets.frames_per_second
        batch = req.batch_size
        tracks = req.track_names
        # A track batch: every class starts from the same seed (and source encoding); only the instruction differs.
        seeds = fill_seeds(req.seeds, 1) * batch if tracks else fill_seeds(req.seeds, batch)
        # Turbo checkpoints have guidance distilled in: guidance is off whatever the request says (as in diffusers).
        guidance_scale = 1.0 if vs.is_turbo else req.guidance_scale
        do_cfg = guidance_scale > 1.0
        steps = req.inference_steps or ACESTEP15_FACTS.steps_for(is_turbo=vs.is_turbo)

        task = req.task_type
        codes = _normalize_audio_codes(req.audio_codes, batch) if req.audio_codes else []
        if codes and task == "text2music":
            task = "cover"
        instructions = [
            AceStepPipeline._get_task_instruction(task_type=task, track_name=name, complete_track_classes=None)
            for name in tracks
        ] or [req.instruction or AceStepPipeline._get_task_instruction(
            task_type=task, track_name=req.track_name, complete_track_classes=req.complete_track_classes
        )]
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
        prompts = [_format_prompt(req, duration=duration, instruction=text) for text in instructions]
        lyrics = prompts[0][1]  # the lyric side does not read the instruction
        refer = yield from self._reference_latents(vs, versions, reference_audio, generator)
        encoder, lengths = yield from self._conditions(vs, versions, [text for text, _ in prompts], lyrics, refer)
        non_cover = None
        if task == "cover" and req.audio_cover_strength < 1.0:
            nc_text, nc_lyrics = _format_prompt(req, duration=duration, instruction=TASK_INSTRUCTIONS["text2music"])
            non_cover = yield from self._conditions(vs, versions, [nc_text], nc_lyrics, refer)
        no_lyrics, lyric_g = None, req.lyric_guidance if req.lyric_guidance != 1.0 else None
        if lyric_g is not None:
            # Lyric guidance: the same prompt with the lyrics left out, one more DiT row per step (docs/edits.md).
            bare = dataclasses.replace(req, lyrics="")
            nl_prompts = [_format_prompt(bare, duration=duration, instruction=text) for text in instructions]
            no_lyrics = yield from self._conditions(
                vs, versions, [text for text, _ in nl_prompts], nl_prompts[0][1], refer
            )

        src, frames = yield from self._source_latents(
            vs, versions, task, parsed_codes, src_audio, frames, generator, batch, src_latents
        )
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
        # One condition row per item: the track batch has its own per class, other songs share one.
        cond_rows = encoder if tracks else np.repeat(encoder, batch, axis=0)
        cond_lengths = lengths if tracks else lengths * batch
        null_rows = np.broadcast_to(vs.null_condition_emb, cond_rows.shape)
        total = len(scheduler.timesteps)
        for step, t_sched in enumerate(scheduler.timesteps):
            check_cancelled(cancelled)
            t = float(t_sched)
            if do_cfg and sampling.cfg_active(t, req.cfg_interval_start, req.cfg_interval_end):
                v = yield from self._velocity(
                    versions,
                    torch.cat([latents, latents]),
                    t,
                    np.concatenate([cond_rows, null_rows]),
                    np.concatenate([context, context]),
                    cond_lengths * 2,
                )
                v_cond, v_uncond = v.chunk(2)
                if req.use_adg:
                    vt = sampling.adg(latents, v_cond, v_uncond, t, guidance_scale)
                else:
                    assert momentum is not None
                    vt = sampling.apg(v_cond, v_uncond, guidance_scale, momentum)
            else:
                vt = v_cond = yield from self._velocity(versions, latents, t, cond_rows, context, cond_lengths)
            if no_lyrics is not None and lyric_g is not None:
                nl_rows = no_lyrics[0] if tracks else np.repeat(no_lyrics[0], batch, axis=0)
                nl_lengths = no_lyrics[1] if tracks else no_lyrics[1] * batch
                v_nl = yield from self._velocity(versions, latents, t, nl_rows, context, nl_lengths)
                vt = vt + (lyric_g - 1.0) * (v_cond - v_nl)
            if non_cover is not None:
                nc_rows = np.repeat(non_cover[0], batch, axis=0)
                v_nc = yield from self._velocity(versions, latents, t, nc_rows, context, non_cover[1] * batch)
                vt = req.audio_cover_strength * vt + (1.0 - req.audio_cover_strength) * v_nc
            latents = scheduler.step(vt, t_sched, latents, return_dict=False)[0]
            progress({"type": "progress", "stage": "diffusion", "step": step + 1, "total": total})

        timing = None
        if req.align_lyrics:
            timing = yield from lyric_timing.align_lyrics(
                versions=versions,
                buckets=self.assets.buckets,
                tokens=alignment.lyric_tokens(vs.tokenizer, lyrics, req.lyrics, self.assets.max_lyric_tokens),
                lyrics=req.lyrics,
                latents=latents,
                encoder=cond_rows,
                context=context,
                seeds=seeds,
                steps=total,
                duration_s=frames / fps,
            )
        progress({"type": "progress", "stage": "decode", "step": total, "total": total})
        decoded = yield from self._rows("vae_decoder", versions, {"latents": latents.numpy()}, ["audio"], "decode")
        audio = sampling.normalize_audio(torch.from_numpy(decoded["audio"])).numpy()
        info = {
            "versions": versions,
            "version_set": vs.name,
            "task_type": task,
            "steps": total,
            "guidance_scale": guidance_scale,
            "guidance_applied": not vs.is_turbo,  # turbo: guidance distilled in, the request's scale/ADG unused
            "shift": req.shift,
            "duration": frames / fps,
            "use_adg": req.use_adg,
            "lyric_guidance": req.lyric_guidance,
            "latents": latents.numpy(),  # what the VAE decoded [B, T, C]: sent as the ``latents`` output, not JSON
        }
        if tracks:
            info["track_names"] = list(tracks)  # item i is class track_names[i]
        if timing is not None:
            info["alignment"] = timing  # per item: lrc, aligned_lyrics, alignment_score
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
        src_latents: np.ndarray | None = None,
    ) -> Calls[tuple[np.ndarray, int]]:
        """[B, T, C] source latents and the final length T (``src_latents``: the source's own, used as they are)."""
        pool = int(self.assets.dims["pool_window"])
        if parsed_codes:
            width = max(len(c) for c in parsed_codes)
            ids = np.zeros((batch, width), np.int64)
            for i, c in enumerate(parsed_codes):
                ids[i, : len(c)] = c
            out = yield from network(
                "audio_detokenizer", versions["audio_detokenizer"], {"audio_codes": ids}, ["latents"], "encode"
            )
            return out["latents"], out["latents"].shape[1]
        if src_audio is not None:
            if src_latents is not None:
                latents = _given_latents(src_latents, vs.silence_latent.shape[-1])
            else:
                latents = yield from self._encode_audio(versions, src_audio, generator)
            frames = latents.shape[0]
            if task == "cover":
                pad = (-frames) % pool
                padded = np.concatenate([latents, vs.silence_latent[:pad]]) if pad else latents
                windows = padded.reshape(1, -1, pool, padded.shape[-1]).astype(np.float32)
                tokens = yield from network(
                    "audio_tokenizer", versions["audio_tokenizer"], {"latents": windows}, ["audio_codes"], "encode"
                )
                out = yield from network(
                    "audio_detokenizer",
                    versions["audio_detokenizer"],
                    {"audio_codes": tokens["audio_codes"]},
                    ["latents"],
                    "encode",
                )
                latents = out["latents"][0, :frames]
            return np.repeat(latents[None], batch, axis=0), frames
        return np.repeat(self._silence(vs, frames)[None], batch, axis=0), frames


def _given_latents(latents: np.ndarray, channels: int) -> np.ndarray:
    if latents.ndim != 2 or latents.shape[1] != channels or latents.shape[0] < 1:
        raise RequestError(
            f"sampler: input 'src_latents' is {list(latents.shape)}; this version set's latents are "
            f"[frames, {channels}]"
        )
    return np.ascontiguousarray(latents, dtype=np.float32)


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
