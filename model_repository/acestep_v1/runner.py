"""One ACE-Step v1 (DCAE family) song request through the ``v1_*`` networks: conditions -> flow matching -> decode.

The runner never touches a model: :meth:`V1SongRunner.steps` is a generator that yields every network evaluation as a
:class:`~model_repository.sampler.protocol.NetworkRequest` (in Triton the step scheduler batches all active songs'
requests into one BLS call per network and shape; ``run`` answers them one by one, in benchmarks and tests through
ONNX Runtime in-process). Songs keep their exact latent length; each ``v1_dit`` request pads to the frame and memory
buckets with masks, so songs of similar length share a batch whatever step they are at (conditional and
unconditional rows too: ERG is a per-row flag of the network).

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

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from model_repository.acestep_v1 import sampling
from model_repository.acestep_v1.assets import DEFAULT_STEPS, V1Assets, V1VersionSet
from model_repository.acestep_v1.decode import (
    HOP_LENGTH,
    MEL_FRAMES_PER_LATENT,
    OUTPUT_SAMPLE_RATE,
    SAMPLES_PER_LATENT,
    VOCODER_SAMPLE_RATE,
    overlapped_mel,
    overlapped_wave,
)
from model_repository.acestep_v1.edits import edit_window, is_window
from model_repository.acestep_v1.resample import resample
from model_repository.acestep_v1.steppers import EulerStepper, HeunStepper
from model_repository.facts.families import ACESTEP_V1
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

FAMILY = ACESTEP_V1
# ERG flags per dit/condition row.
_PLAIN, _WEAKENED = 0, 1


@dataclass
class _Conditions:
    """Cross-attention memories [1, n, D] (valid positions only) of one song."""

    cond: np.ndarray
    uncond: np.ndarray | None
    text_only: np.ndarray | None


class V1SongRunner(RunnerBase[V1Assets]):
    """The ACE-Step v1 family runner (:class:`~model_repository.sampler.protocol.FamilyRunner`)."""

    family = FAMILY
    assets_type = V1Assets

    # ---- conditions ------------------------------------------------------------------------------------------------
    def _text_states(self, vs: V1VersionSet, versions: dict[str, str], caption: str, weakened: bool
                     ) -> Calls[tuple[np.ndarray, np.ndarray]]:
        """Caption -> (UMT5 states [1 or 2, T, H] (row 1: ERG "null" text), mask [1, T]) at the text bucket."""
        with vs.lock:
            ids = vs.tokenizer(caption, truncation=True, max_length=int(self.assets.dims["max_text_tokens"])).input_ids
        tb = bucket(len(ids), self.assets.buckets["text"], "field 'caption'", FAMILY)
        pad = vs.tokenizer.pad_token_id or 0
        row = np.full((1, tb), pad, np.int64)
        row[0, : len(ids)] = ids
        mask = (np.arange(tb) < len(ids)).astype(np.int64)[None]
        rows = 2 if weakened else 1
        out = yield from network(
            "v1_text_encoder",
            versions["v1_text_encoder"],
            {
                "text_input_ids": np.repeat(row, rows, axis=0),
                "text_attention_mask": np.repeat(mask, rows, axis=0),
                "erg": np.array([[_PLAIN], [_WEAKENED]][:rows], np.int64),
            },
            ["text_hidden_states"],
            "encode",
        )
        return out["text_hidden_states"], mask

    def _conditions(self, vs: V1VersionSet, versions: dict[str, str], req: SamplerRequest, *, guided: bool,
                    double: bool) -> Calls[_Conditions]:
        text, text_mask = yield from self._text_states(vs, versions, req.caption, weakened=guided and req.use_erg_tag)
        tokens = self.assets.tokenize_lyrics(req.lyrics)
        lb = bucket(len(tokens.ids), self.assets.buckets["lyric"], "field 'lyrics'", FAMILY)
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
        out = yield from network(
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
            "encode",
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
                  erg: np.ndarray) -> Calls[torch.Tensor]:
        """One ``v1_dit`` evaluation of rows ``x`` [R, 8, 16, T], padded to the frame/memory buckets with masks."""
        rows, channels, height, frames = x.shape
        fb = bucket(frames, self.assets.buckets["frames"], "the song", FAMILY)
        eb = bucket(memory.shape[1], self.assets.buckets["encoder"], "the caption + lyrics memory", FAMILY)
        hidden = np.zeros((rows, channels, height, fb), np.float32)
        hidden[..., :frames] = x.numpy()
        latent_mask = np.zeros((rows, fb), np.int64)
        latent_mask[:, :frames] = 1
        enc = np.zeros((rows, eb, memory.shape[-1]), np.float32)
        enc[:, : memory.shape[1]] = memory
        enc_mask = np.zeros((rows, eb), np.int64)
        enc_mask[:, : memory.shape[1]] = 1
        out = yield from network(
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

    def _encode_source(self, versions: dict[str, str], audio: np.ndarray) -> Calls[torch.Tensor]:
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
        out = yield from network(
            "v1_dcae_encoder", versions["v1_dcae_encoder"], {"audio": wave[None].numpy()}, ["latents"], "encode"
        )
        return torch.from_numpy(out["latents"])

    def _mel(self, versions: dict[str, str], window: torch.Tensor) -> Calls[torch.Tensor]:
        out = yield from network(
            "v1_dcae_decoder", versions["v1_dcae_decoder"], {"latents": window.numpy()}, ["mel"], "decode"
        )
        return torch.from_numpy(out["mel"])

    def _wave(self, versions: dict[str, str], mel: torch.Tensor) -> Calls[torch.Tensor]:
        out = yield from network("v1_vocoder", versions["v1_vocoder"], {"mel": mel.numpy()}, ["audio"], "decode")
        return torch.from_numpy(out["audio"])

    def _decode(self, versions: dict[str, str], latents: torch.Tensor) -> Calls[np.ndarray]:
        """Latents [B, 8, 16, T] -> 48 kHz stereo [B, 2, S]; one song per decoder row, overlapped past 240 s."""
        songs = []
        for latent in latents:
            window = latent[None].contiguous()
            if window.shape[-1] <= self.assets.max_frames:
                mel = (yield from self._mel(versions, window))[0]  # [2, 128, 8T]
                wave = (yield from self._wave(versions, mel.contiguous())).reshape(2, -1)
            else:
                long_mel = yield from _replayed(
                    partial(overlapped_mel, window),
                    lambda x: torch.zeros(1, 2, 128, MEL_FRAMES_PER_LATENT * x.shape[-1]),
                    lambda x: self._mel(versions, x),
                )
                mel = long_mel[0]
                wave = yield from _replayed(
                    partial(overlapped_wave, mel),
                    lambda x: torch.zeros(x.shape[0], 1, HOP_LENGTH * x.shape[-1]),
                    lambda x: self._wave(versions, x.contiguous()),
                )
            songs.append(resample(wave.float(), VOCODER_SAMPLE_RATE, OUTPUT_SAMPLE_RATE))
        return torch.stack(songs).numpy().astype(np.float32)

    # ---- the request -----------------------------------------------------------------------------------------------
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
        for name, given in (("reference_audio", reference_audio), ("src_latents", src_latents)):
            if given is not None:
                raise RequestError(f"sampler: input '{name}' applies to family 'acestep15' only")
        vs = self.assets.version_set(req.version_set)
        versions = resolve_versions(req, vs.versions)
        task = req.task_type
        edit = task in ("repaint", "extend")
        if edit and req.scheduler == "heun":
            raise RequestError("sampler: field 'scheduler' must be 'euler' for task_type 'repaint'/'extend'")
        if edit and src_audio is None:
            raise RequestError(f"sampler: task_type '{task}' needs input 'src_audio' (48 kHz stereo [2, samples])")
        batch = req.batch_size
        seeds = fill_seeds(req.seeds, batch)
        retake_seeds = fill_seeds(req.retake_seeds, batch)
        steps = req.inference_steps or DEFAULT_STEPS
        guidance_scale = req.guidance_scale
        do_cfg = guidance_scale not in (0.0, 1.0)
        double = sampling.uses_double_condition(req.guidance_scale_text, req.guidance_scale_lyric)
        progress({"type": "progress", "stage": "encode", "step": 0, "total": steps})

        conditions = yield from self._conditions(vs, versions, req, guided=do_cfg, double=double)
        source = (yield from self._encode_source(versions, src_audio)) if edit and src_audio is not None else None
        # The original: int(seconds * 44100 / 512 / 8) frames (60 s when unset); an edit takes the source's length.
        seconds = req.duration or 60.0
        frames = source.shape[-1] if source is not None else int(seconds * VOCODER_SAMPLE_RATE / SAMPLES_PER_LATENT)
        shape = (batch, int(self.assets.dims["latent_channels"]), int(self.assets.dims["latent_height"]), frames)
        schedule = sampling.flow_match_schedule(steps, shift=req.shift)
        stepper_type = HeunStepper if req.scheduler == "heun" else EulerStepper
        stepper: EulerStepper | HeunStepper = stepper_type(schedule, req.omega_scale)
        timesteps = stepper.timesteps
        evaluations = len(timesteps)

        latents = sampling.seeded_noise(shape, seeds)
        window = None
        if task in ("retake", "repaint", "extend"):
            variance = torch.tensor(req.retake_variance * math.pi / 2, dtype=torch.float32)
            retake = sampling.seeded_noise(shape, retake_seeds)
            if task == "retake" or (task == "repaint" and not is_window(req, frames)):
                # A window covering the whole song is a retake: a variation of the same seeds' noise.
                latents = torch.cos(variance) * latents + torch.sin(variance) * retake
            else:
                assert source is not None
                window = edit_window(req, task, source, latents, retake, variance, max_frames=self.assets.max_frames)
                latents = window.z0
        start_eval = int(steps * (1 - req.retake_variance)) if window is not None else 0
        first, last = sampling.guidance_interval(evaluations, req.guidance_interval)
        momentum = sampling.MomentumBuffer()
        total = evaluations - start_eval
        cond_rows = np.repeat(conditions.cond, batch, axis=0)
        for i in range(start_eval, evaluations):
            check_cancelled(cancelled)
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
                v = yield from self._velocity(
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
                velocity = yield from self._velocity(versions, latents, t, cond_rows, np.full(batch, _PLAIN, np.int64))
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
        audio = yield from self._decode(versions, latents)
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
            "latents": latents.numpy(),  # what the decoder decoded [B, 8, 16, T]: the ``latents`` output, not JSON
        }
        if task != "text2music":
            info |= {"retake_seeds": retake_seeds, "retake_variance": req.retake_variance}
        if req.ignored_fields:
            info["ignored_fields"] = list(req.ignored_fields)
        return audio, seeds, info

def _replayed(
    run: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor],
    placeholder: Callable[[torch.Tensor], torch.Tensor],
    call: Callable[[torch.Tensor], Calls[torch.Tensor]],
) -> Calls[torch.Tensor]:
    """``run(net)`` (``overlapped_mel``/``overlapped_wave``, which call ``net`` synchronously) inside a song generator.
    Their window inputs depend on the input only, never on earlier outputs, so a first pass records them (answering
    with ``placeholder`` tensors of the output's shape), the song yields one request per window, and a second pass
    replays the real outputs in order."""
    windows: list[torch.Tensor] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        windows.append(x.clone())
        return placeholder(x)

    run(record)
    answers = []
    for x in windows:
        answers.append((yield from call(x)))
    replies = iter(answers)
    return run(lambda _x: next(replies))
