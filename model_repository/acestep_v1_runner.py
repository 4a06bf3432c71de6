"""One ACE-Step v1 (DCAE family) song request through the ``v1_*`` networks: conditions -> flow matching -> decode.

The runner never touches a model: every network evaluation goes through a ``NetworkCaller`` (in Triton a BLS request,
where the dynamic batcher merges it with other songs' calls; in benchmarks and tests ONNX Runtime in-process). Songs
keep their exact latent length; each ``v1_dit`` call pads to the frame and memory buckets with masks, so songs of
similar length share a batch whatever step they are at (conditional and unconditional rows too: ERG is a per-row
flag of the network).

The numerics are the original ``ACEStepPipeline.__call__`` -> ``text2music_diffusion_process`` (ACE-Step v1):

* caption -> UMT5 (``erg=1`` row: the weakened-query "null" text when ``use_erg_tag``); lyrics -> the v1 lyric
  tokenizer; memories: condition ``(text, zero speaker, lyrics)``, unconditional ``(null or zero text, zero speaker,
  lyrics with ERG | zero lyrics)``, and for double-condition guidance ``(text, zero speaker, weakened | zero lyrics)``.
  The memory keeps only valid positions, in order (speaker, text, lyrics), as the unpadded original sees them:
  cross-attention applies RoPE to key positions, so padding between text and lyrics would move the lyrics.
* ``seeded_noise`` per item; ``retake``: ``cos(v) noise + sin(v) retake_noise`` with ``v = retake_variance * pi / 2``.
* Euler with the omega mean-shift (or Heun: ``2N - 1`` evaluations), guidance (APG with momentum, CFG, CFG-zero*,
  or the text/lyric double condition) inside the centred ``guidance_interval`` with optional linear decay.
* ``repaint``/``extend``: the first ``int(N * (1 - retake_variance))`` steps are skipped, the window starts from the
  source noised to that step, plain Euler steps, and outside the window the latent is reset to the noised source
  after every step (so it ends exactly on the source).
* ``v1_dcae_decoder`` -> ``v1_vocoder`` per stereo channel -> resample 44.1 -> 48 kHz (overlapped windows past the
  decoder's 240 s).

Deviations from the original, all in corner cases it gets wrong: an extension that pushes the song past 240 s keeps
the source part that no longer fits unchanged and re-attaches it on its own side (the original re-attaches a copy of
the wrong frames), and with both sides extended ``repaint_end`` counts from the source's start (the original counts
it from the left-padded start, so a both-sided extension loses its right side).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_repository import acestep_v1_sampling as sampling
from model_repository.acestep15_runner import Cancelled, NetworkCaller
from model_repository.acestep_v1_decode import (
    OUTPUT_SAMPLE_RATE,
    SAMPLES_PER_LATENT,
    VOCODER_SAMPLE_RATE,
    overlapped_mel,
    overlapped_wave,
)
from model_repository.audio_resample import resample
from model_repository.sampler_request import MAX_SEED, RequestError, SamplerRequest

logger = logging.getLogger(__name__)

FAMILY = "acestep_v1"
# The original pipeline's defaults.
DEFAULT_STEPS = 60
# ERG flags per dit/condition row.
_PLAIN, _WEAKENED = 0, 1


@dataclass
class V1VersionSet:
    name: str
    versions: dict[str, str]
    tokenizer: Any  # the UMT5 caption tokenizer
    lock: threading.Lock  # fast tokenizers are not safe to call from several threads at once


def bucket(size: int, buckets: Sequence[int], what: str) -> int:
    for b in buckets:
        if b >= size:
            return int(b)
    raise RequestError(f"sampler: {what} is {size} tokens/frames; at most {buckets[-1]} fit (family acestep_v1)")


class V1Assets:
    """``assets/acestep_v1/pipeline.json`` and each version set's tokenizer, loaded once and shared by all songs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest: dict[str, Any] = json.loads((self.root / "pipeline.json").read_text())
        self.dims: dict[str, Any] = self.manifest["dims"]
        self.buckets: dict[str, list[int]] = self.manifest["buckets"]
        self._sets: dict[str, V1VersionSet] = {}
        self._lock = threading.Lock()
        self._lyrics_lock = threading.Lock()
        self._lyrics: Any = None

    @property
    def sample_rate(self) -> int:
        return int(self.dims["sample_rate"])

    @property
    def max_frames(self) -> int:
        """Frames the DiT takes at once (the trained 240 s)."""
        return int(self.dims["trained_frames"])

    def tokenize_lyrics(self, lyrics: str) -> Any:
        """Lyrics -> ids and mask. One song at a time: the Japanese romaniser (MeCab) is not thread-safe."""
        with self._lyrics_lock:
            if self._lyrics is None:
                from model_repository.acestep_v1_lyrics import LyricTokenizer

                self._lyrics = LyricTokenizer()
            return self._lyrics.tokenize_lyrics(lyrics)

    def version_set(self, name: str | None) -> V1VersionSet:
        name = name or self.manifest["default_version_set"]
        sets = self.manifest["version_sets"]
        if name not in sets:
            raise RequestError(
                f"sampler: field 'version_set' must be one of {sorted(sets)} for family acestep_v1, got {name!r}"
            )
        with self._lock:
            if name not in self._sets:
                from transformers import AutoTokenizer

                self._sets[name] = V1VersionSet(
                    name=name,
                    versions=dict(sets[name]["versions"]),
                    tokenizer=AutoTokenizer.from_pretrained(self.root / name / "tokenizer"),
                    lock=threading.Lock(),
                )
            return self._sets[name]

    def describe(self) -> dict[str, Any]:
        sets = self.manifest["version_sets"]
        return {
            "version_sets": {name: {"versions": dict(s["versions"]), "variant": s.get("variant")} for name, s in
                             sorted(sets.items())},
            "default_version_set": self.manifest["default_version_set"],
            "sample_rate": self.sample_rate,
            "max_duration": round(self.max_frames * SAMPLES_PER_LATENT / VOCODER_SAMPLE_RATE, 2),
            "default_steps": DEFAULT_STEPS,
        }


@dataclass
class _Conditions:
    """Cross-attention memories [1, n, D] (valid positions only) of one song."""

    cond: np.ndarray
    uncond: np.ndarray | None
    text_only: np.ndarray | None


class _Euler:
    """The original Euler scheduler's step with the omega mean-shift."""

    def __init__(self, schedule: sampling.FlowSchedule, omega: float) -> None:
        self.schedule, self.omega = schedule, omega

    @property
    def timesteps(self) -> torch.Tensor:
        return self.schedule.timesteps

    def step(self, index: int, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        sigmas = self.schedule.sigmas
        return sampling.euler_step(sample, velocity, sigmas[index], sigmas[index + 1], omega=self.omega)


class _Heun:
    """The original Heun scheduler: timesteps ``[t0, t1, t1, ..., t_{N-1}, t_{N-1}]`` (``2N - 1`` evaluations);
    even evaluations take an Euler step and remember it, odd ones redo it with the mean of both slopes. Both apply the
    omega mean-shift."""

    def __init__(self, schedule: sampling.FlowSchedule, omega: float) -> None:
        sig = schedule.sigmas  # [N + 1], ends in 0
        self._timesteps = torch.cat([schedule.timesteps[:1], schedule.timesteps[1:].repeat_interleave(2)])
        self._sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
        self.omega = sampling.omega_rescale(omega)
        self._first: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # derivative, dt, sample

    @property
    def timesteps(self) -> torch.Tensor:
        return self._timesteps

    def step(self, index: int, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        sample = sample.to(torch.float32)
        if self._first is None:
            sigma, sigma_next = self._sigmas[index], self._sigmas[index + 1]
            derivative = (sample - (sample - velocity * sigma)) / sigma
            dt = sigma_next - sigma
            self._first = (derivative, dt, sample)
        else:
            sigma_next = self._sigmas[index]
            first_derivative, dt, sample_before = self._first
            derivative = 0.5 * (first_derivative + (sample - (sample - velocity * sigma_next)) / sigma_next)
            sample = sample_before
            self._first = None
        dx = derivative * dt
        m = dx.mean()
        return (sample + ((dx - m) * self.omega + m)).to(velocity.dtype)


class V1SongRunner:
    def __init__(self, assets: V1Assets, call: NetworkCaller) -> None:
        self.assets = assets
        self.call = call

    # ---- conditions ------------------------------------------------------------------------------------------------
    def _text_states(self, vs: V1VersionSet, versions: dict[str, str], caption: str, weakened: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Caption -> (UMT5 states [1 or 2, T, H] (row 1: ERG "null" text), mask [1, T]) at the text bucket."""
        with vs.lock:
            ids = vs.tokenizer(caption, truncation=True, max_length=int(self.assets.dims["max_text_tokens"])).input_ids
        tb = bucket(len(ids), self.assets.buckets["text"], "field 'caption'")
        pad = vs.tokenizer.pad_token_id or 0
        row = np.full((1, tb), pad, np.int64)
        row[0, : len(ids)] = ids
        mask = (np.arange(tb) < len(ids)).astype(np.int64)[None]
        rows = 2 if weakened else 1
        out = self.call(
            "v1_text_encoder",
            versions["v1_text_encoder"],
            {
                "text_input_ids": np.repeat(row, rows, axis=0),
                "text_attention_mask": np.repeat(mask, rows, axis=0),
                "erg": np.array([[_PLAIN], [_WEAKENED]][:rows], np.int64),
            },
            ["text_hidden_states"],
        )
        return out["text_hidden_states"], mask

    def _conditions(self, vs: V1VersionSet, versions: dict[str, str], req: SamplerRequest, *, guided: bool,
                    double: bool) -> _Conditions:
        text, text_mask = self._text_states(vs, versions, req.caption, weakened=guided and req.use_erg_tag)
        tokens = self.assets.tokenize_lyrics(req.lyrics)
        lb = bucket(len(tokens.ids), self.assets.buckets["lyric"], "field 'lyrics'")
        lyric_ids = np.zeros((1, lb), np.int64)
        lyric_ids[0, : len(tokens.ids)] = tokens.ids
        lyric_mask = np.zeros((1, lb), np.int64)
        lyric_mask[0, : len(tokens.mask)] = tokens.mask
        no_lyrics = np.zeros_like(lyric_ids)
        zero_text = np.zeros_like(text[:1])
        # (text states, lyric ids, erg) per memory row; the original passes the condition's masks to all of them.
        rows: list[tuple[np.ndarray, np.ndarray, int]] = [(text[:1], lyric_ids, _PLAIN)]
        if guided:
            if req.use_erg_lyric:
                rows.append((text[1:2] if req.use_erg_tag else zero_text, lyric_ids, _WEAKENED))
            else:
                rows.append((zero_text, no_lyrics, _PLAIN))
            if double:
                rows.append((text[:1], lyric_ids, _WEAKENED) if req.use_erg_lyric else (text[:1], no_lyrics, _PLAIN))
        n = len(rows)
        out = self.call(
            "v1_condition_encoder",
            versions["v1_condition_encoder"],
            {
                "text_hidden_states": np.concatenate([r[0] for r in rows]).astype(np.float32),
                "text_attention_mask": np.repeat(text_mask, n, axis=0),
                "speaker_embeds": np.zeros((n, int(self.assets.dims["speaker_dim"])), np.float32),
                "lyric_token_ids": np.concatenate([r[1] for r in rows]),
                "lyric_mask": np.repeat(lyric_mask, n, axis=0),
                "erg": np.array([[r[2]] for r in rows], np.int64),
            },
            ["encoder_hidden_states", "encoder_attention_mask"],
        )
        valid = np.flatnonzero(out["encoder_attention_mask"][0] > 0)
        memories = [out["encoder_hidden_states"][i : i + 1, valid] for i in range(n)]
        return _Conditions(
            cond=memories[0],
            uncond=memories[1] if guided else None,
            text_only=memories[2] if guided and double else None,
        )

    # ---- networks --------------------------------------------------------------------------------------------------
    def _velocity(self, versions: dict[str, str], x: torch.Tensor, t: torch.Tensor, memory: np.ndarray,
                  erg: np.ndarray) -> torch.Tensor:
        """One ``v1_dit`` evaluation of rows ``x`` [R, 8, 16, T], padded to the frame/memory buckets with masks."""
        rows, channels, height, frames = x.shape
        fb = bucket(frames, self.assets.buckets["frames"], "the song")
        eb = bucket(memory.shape[1], self.assets.buckets["encoder"], "the caption + lyrics memory")
        hidden = np.zeros((rows, channels, height, fb), np.float32)
        hidden[..., :frames] = x.numpy()
        latent_mask = np.zeros((rows, fb), np.int64)
        latent_mask[:, :frames] = 1
        enc = np.zeros((rows, eb, memory.shape[-1]), np.float32)
        enc[:, : memory.shape[1]] = memory
        enc_mask = np.zeros((rows, eb), np.int64)
        enc_mask[:, : memory.shape[1]] = 1
        out = self.call(
            "v1_dit",
            versions["v1_dit"],
            {
                "hidden_states": hidden,
                "timestep": np.full((rows, 1), float(t), np.float32),
                "latent_mask": latent_mask,
                "encoder_hidden_states": enc,
                "encoder_attention_mask": enc_mask,
                "erg": erg.reshape(rows, 1).astype(np.int64),
            },
            ["velocity"],
        )
        return torch.from_numpy(np.ascontiguousarray(out["velocity"][..., :frames]))

    def _encode_source(self, versions: dict[str, str], audio: np.ndarray) -> torch.Tensor:
        """48 kHz stereo [2, S] -> latents [1, 8, 16, L] (resampled to 44.1 kHz, padded to whole latent frames)."""
        wave = resample(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), OUTPUT_SAMPLE_RATE,
                        VOCODER_SAMPLE_RATE)
        pad = (-wave.shape[-1]) % SAMPLES_PER_LATENT
        if pad:
            wave = torch.nn.functional.pad(wave, (0, pad))
        frames = wave.shape[-1] // SAMPLES_PER_LATENT
        if frames > self.assets.max_frames:
            raise RequestError(
                f"sampler: input 'src_audio' is {audio.shape[-1] / OUTPUT_SAMPLE_RATE:.1f} s; family acestep_v1 "
                f"edits sources of at most {self.assets.max_frames * SAMPLES_PER_LATENT / VOCODER_SAMPLE_RATE:.0f} s"
            )
        out = self.call("v1_dcae_encoder", versions["v1_dcae_encoder"], {"audio": wave[None].numpy()}, ["latents"])
        return torch.from_numpy(out["latents"])

    def _decode(self, versions: dict[str, str], latents: torch.Tensor) -> np.ndarray:
        """Latents [B, 8, 16, T] -> 48 kHz stereo [B, 2, S]; one song per decoder row, overlapped past 240 s."""

        def mel_of(window: torch.Tensor) -> torch.Tensor:
            out = self.call("v1_dcae_decoder", versions["v1_dcae_decoder"], {"latents": window.numpy()}, ["mel"])
            return torch.from_numpy(out["mel"])

        def wave_of(mel: torch.Tensor) -> torch.Tensor:
            out = self.call("v1_vocoder", versions["v1_vocoder"], {"mel": mel.numpy()}, ["audio"])
            return torch.from_numpy(out["audio"])

        songs = []
        for latent in latents:
            window = latent[None].contiguous()
            if window.shape[-1] <= self.assets.max_frames:
                mel = mel_of(window)[0]  # [2, 128, 8T]
                wave = wave_of(mel.contiguous()).reshape(2, -1)
            else:
                mel = overlapped_mel(window, mel_of)[0]
                wave = overlapped_wave(mel, wave_of)
            songs.append(resample(wave.float(), VOCODER_SAMPLE_RATE, OUTPUT_SAMPLE_RATE))
        return torch.stack(songs).numpy().astype(np.float32)

    # ---- the request -----------------------------------------------------------------------------------------------
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
        if reference_audio is not None:
            raise RequestError("sampler: input 'reference_audio' applies to family 'acestep15' only")
        vs = self.assets.version_set(req.version_set)
        versions = dict(vs.versions)
        if req.versions:
            unknown = sorted(set(req.versions) - set(versions))
            if unknown:
                raise RequestError(
                    f"sampler: field 'versions' names unknown model(s) {unknown}; known {sorted(versions)}"
                )
            versions.update(req.versions)
        task = req.task_type
        edit = task in ("repaint", "extend")
        if edit and req.scheduler == "heun":
            raise RequestError("sampler: field 'scheduler' must be 'euler' for task_type 'repaint'/'extend'")
        if edit and src_audio is None:
            raise RequestError(f"sampler: task_type '{task}' needs input 'src_audio' (48 kHz stereo [2, samples])")
        batch = req.batch_size
        seeds = _fill_seeds(req.seeds, batch)
        retake_seeds = _fill_seeds(req.retake_seeds, batch)
        steps = req.inference_steps or DEFAULT_STEPS
        guidance_scale = req.guidance_scale
        do_cfg = guidance_scale not in (0.0, 1.0)
        double = sampling.uses_double_condition(req.guidance_scale_text, req.guidance_scale_lyric)
        progress({"type": "progress", "stage": "encode", "step": 0, "total": steps})

        conditions = self._conditions(vs, versions, req, guided=do_cfg, double=double)
        source = self._encode_source(versions, src_audio) if edit and src_audio is not None else None
        # The original: int(seconds * 44100 / 512 / 8) frames (60 s when unset); an edit takes the source's length.
        seconds = req.duration or 60.0
        frames = source.shape[-1] if source is not None else int(seconds * VOCODER_SAMPLE_RATE / SAMPLES_PER_LATENT)
        shape = (batch, int(self.assets.dims["latent_channels"]), int(self.assets.dims["latent_height"]), frames)
        schedule = sampling.flow_match_schedule(steps, shift=req.shift)
        stepper: _Euler | _Heun = _Heun(schedule, req.omega_scale) if req.scheduler == "heun" else _Euler(
            schedule, req.omega_scale)
        timesteps = stepper.timesteps
        evaluations = len(timesteps)

        latents = sampling.seeded_noise(shape, seeds)
        window = None
        if task in ("retake", "repaint", "extend"):
            variance = torch.tensor(req.retake_variance * math.pi / 2, dtype=torch.float32)
            retake = sampling.seeded_noise(shape, retake_seeds)
            if task == "retake" or (task == "repaint" and not self._is_window(req, frames)):
                # A window covering the whole song is a retake: a variation of the same seeds' noise.
                latents = torch.cos(variance) * latents + torch.sin(variance) * retake
            else:
                assert source is not None
                window = self._edit_window(req, task, source, latents, retake, variance)
                latents = window.z0
        start_eval = int(steps * (1 - req.retake_variance)) if window is not None else 0
        first, last = sampling.guidance_interval(evaluations, req.guidance_interval)
        momentum = sampling.MomentumBuffer()
        total = evaluations - start_eval
        cond_rows = np.repeat(conditions.cond, batch, axis=0)
        for i in range(start_eval, evaluations):
            if cancelled():
                raise Cancelled("sampler: request cancelled")
            t = timesteps[i]
            if window is not None and i == start_eval:
                t_i = t / 1000
                noised = (1 - t_i) * window.x0 + t_i * window.z0
                latents = window.x0 + noised - window.x0
            guided = do_cfg and first <= i < last
            if guided:
                assert conditions.uncond is not None
                memories = [cond_rows, np.repeat(conditions.uncond, batch, axis=0)]
                ergs = [_PLAIN, _WEAKENED if req.use_erg_diffusion else _PLAIN]
                if conditions.text_only is not None:
                    memories.append(np.repeat(conditions.text_only, batch, axis=0))
                    ergs.append(_PLAIN)
                parts = len(memories)
                v = self._velocity(
                    versions,
                    torch.cat([latents] * parts),
                    t,
                    np.concatenate(memories),
                    np.repeat(np.array(ergs, np.int64), batch),
                )
                chunks = v.chunk(parts)
                scale = sampling.guidance_scale_at(
                    i, first, last, guidance_scale, req.guidance_interval_decay, req.min_guidance_scale
                )
                velocity = sampling.guide(
                    req.guidance_type,
                    chunks[0],
                    chunks[1],
                    scale,
                    i,
                    momentum_buffer=momentum,
                    only_text_cond=chunks[2] if parts == 3 else None,
                    guidance_scale_text=req.guidance_scale_text,
                    guidance_scale_lyric=req.guidance_scale_lyric,
                )
            else:
                velocity = self._velocity(versions, latents, t, cond_rows, np.full(batch, _PLAIN, np.int64))
            if window is not None:
                t_i = t / 1000
                t_next = timesteps[i + 1] / 1000 if i + 1 < evaluations else torch.zeros_like(t_i)
                stepped = latents.to(torch.float32) + (t_next - t_i) * velocity
                noised = (1 - t_next) * window.x0 + t_next * window.z0
                latents = torch.where(window.mask, stepped, noised)
            else:
                latents = stepper.step(i, velocity, latents)
            progress({"type": "progress", "stage": "diffusion", "step": i - start_eval + 1, "total": total})

        if window is not None:
            latents = torch.cat([window.keep_left.expand(batch, -1, -1, -1), latents,
                                 window.keep_right.expand(batch, -1, -1, -1)], dim=-1)
        progress({"type": "progress", "stage": "decode", "step": total, "total": total})
        audio = self._decode(versions, latents)
        info = {
            "family": FAMILY,
            "versions": versions,
            "version_set": vs.name,
            "task_type": task,
            "steps": total,
            "scheduler": req.scheduler,
            "guidance_scale": guidance_scale,
            "guidance_type": "double_condition" if double and do_cfg else req.guidance_type,
            "guidance_interval": req.guidance_interval,
            "omega_scale": req.omega_scale,
            "shift": req.shift,
            "erg": {"tag": req.use_erg_tag, "lyric": req.use_erg_lyric, "diffusion": req.use_erg_diffusion},
            "duration": round(audio.shape[-1] / OUTPUT_SAMPLE_RATE, 3),
            "latent_frames": int(latents.shape[-1]),
        }
        if task != "text2music":
            info |= {"retake_seeds": retake_seeds, "retake_variance": req.retake_variance}
        if req.ignored_fields:
            info["ignored_fields"] = list(req.ignored_fields)
        return audio, seeds, info

    # ---- repaint / extend ------------------------------------------------------------------------------------------
    @staticmethod
    def _frame(seconds: float) -> int:
        return int(seconds * VOCODER_SAMPLE_RATE / SAMPLES_PER_LATENT)

    def _is_window(self, req: SamplerRequest, frames: int) -> bool:
        assert req.repaint_start is not None and req.repaint_end is not None
        return self._frame(req.repaint_end) - self._frame(req.repaint_start) != frames

    def _edit_window(self, req: SamplerRequest, task: str, source: torch.Tensor, noise: torch.Tensor,
                     retake: torch.Tensor, variance: torch.Tensor) -> _Window:
        assert req.repaint_start is not None and req.repaint_end is not None
        length = source.shape[-1]
        start, end = self._frame(req.repaint_start), self._frame(req.repaint_end)
        source_seconds = length * SAMPLES_PER_LATENT / VOCODER_SAMPLE_RATE
        empty = source[..., :0]
        if task == "repaint":
            if end > length:
                raise RequestError(
                    f"sampler: field 'repaint_end' ({req.repaint_end:g} s) lies past the source's end "
                    f"({source_seconds:.2f} s); to add audio after it use task_type 'extend'"
                )
            mask = torch.zeros((1, 1, 1, length), dtype=torch.bool)
            mask[..., start:end] = True
            mixed = torch.cos(variance) * noise + torch.sin(variance) * retake
            return _Window(source, torch.where(mask, mixed, noise), mask, empty, empty)
        left, right = max(0, -start), max(0, end - length)
        if left == 0 and right == 0:
            raise RequestError(
                "sampler: task_type 'extend' needs 'repaint_start' < 0 (seconds added before the song) or "
                f"'repaint_end' > the source's length ({source_seconds:.2f} s)"
            )
        for name, pad in (("repaint_start", left), ("repaint_end", right)):
            if pad > length:
                raise RequestError(
                    f"sampler: field '{name}' extends the song by {pad} frames; at most the source's length "
                    f"({source_seconds:.2f} s, {length} frames) can be added on one side"
                )
        limit = self.assets.max_frames
        padded = torch.nn.functional.pad(source, (left, right))
        # Past the DiT's 240 s the source part farthest from the new audio is kept aside, unchanged.
        over = max(0, padded.shape[-1] - limit)
        keep_left, keep_right = empty, empty
        left_trim = right_trim = 0
        if over and left:
            right_trim = min(over, length)
            keep_right = padded[..., padded.shape[-1] - right_trim :]
            padded = padded[..., : padded.shape[-1] - right_trim]
        elif over:
            left_trim = min(over, length)
            keep_left = padded[..., :left_trim]
            padded = padded[..., left_trim:]
        if padded.shape[-1] > limit:
            raise RequestError(
                f"sampler: extending by {left + right} frames on both sides needs {padded.shape[-1]} frames at once; "
                f"family acestep_v1 generates at most {limit} (240 s): extend one side at a time"
            )
        mask = torch.zeros((1, 1, 1, padded.shape[-1]), dtype=torch.bool)
        if left:
            mask[..., :left] = True
        if right:
            mask[..., padded.shape[-1] - right :] = True
        parts = [retake[..., :left]] if left else []
        parts.append(noise[..., left_trim : length - right_trim])
        if right:
            parts.append(retake[..., length - right :])
        return _Window(padded, torch.cat(parts, dim=-1), mask, keep_left, keep_right)


@dataclass
class _Window:
    """A repaint/extend edit: the source ``x0`` (zero-padded where the song grows), the start noise ``z0``, the mask
    of generated frames, and source frames kept aside past 240 s."""

    x0: torch.Tensor  # [1, 8, 16, T]
    z0: torch.Tensor  # [B, 8, 16, T]
    mask: torch.Tensor  # [1, 1, 1, T] bool
    keep_left: torch.Tensor
    keep_right: torch.Tensor


def _fill_seeds(given: list[int] | None, batch: int) -> list[int]:
    seeds = list(given or [])
    return seeds + [secrets.randbelow(MAX_SEED + 1) for _ in range(batch - len(seeds))]
