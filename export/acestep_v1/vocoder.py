"""The ACE-Step v1 vocoder (``music_vocoder/``): a ConvNeXt mel encoder feeding a HiFi-GAN generator, 44.1 kHz mono.

Written to the real checkpoint's keys: old-style ``torch.nn.utils.weight_norm`` parameters (``weight_g`` of shape
[out, 1, 1] and ``weight_v``; for ``ConvTranspose1d`` dim 0 is the *input* channels) and the log-mel front end's two
persistent buffers (``mel_transform.spectrogram.window``, ``mel_transform.mel_scale.fb``), which are deterministic
and rebuilt here when a checkpoint lacks them. :func:`fold_weight_norm` turns the weight-normed convolutions into
plain ones for export.

One 128-bin log-mel frame is 512 samples (``hop_length``): 44100 / 512 = 86.13 frames per second.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class VocoderConfig:
    """``music_vocoder/config.json`` (ADaMoSHiFiGANV1's arguments; unknown keys are ignored)."""

    input_channels: int = 128
    depths: list[int] = field(default_factory=lambda: [3, 3, 9, 3])
    dims: list[int] = field(default_factory=lambda: [128, 256, 384, 512])
    drop_path_rate: float = 0.0
    kernel_sizes: list[int] = field(default_factory=lambda: [7])
    upsample_rates: list[int] = field(default_factory=lambda: [4, 4, 2, 2, 2, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [8, 8, 4, 4, 4, 4, 4])
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11, 13])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 4)
    num_mels: int = 512
    upsample_initial_channel: int = 1024
    use_template: bool = False
    pre_conv_kernel_size: int = 13
    post_conv_kernel_size: int = 13
    sampling_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 512
    f_min: int = 40
    f_max: int = 16000
    n_mels: int = 128

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> VocoderConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in raw.items() if k in known})
        if cfg.use_template:
            raise ValueError("use_template=True (the noise template branch) is not supported; the v1 vocoder has False")
        if len(cfg.kernel_sizes) != 1:
            raise ValueError(f"kernel_sizes={cfg.kernel_sizes}: only a single ConvNeXt kernel size is supported")
        if math.prod(cfg.upsample_rates) != cfg.hop_length:
            raise ValueError(f"prod(upsample_rates)={math.prod(cfg.upsample_rates)} must equal hop_length")
        if cfg.num_mels != cfg.dims[-1]:
            raise ValueError(f"num_mels={cfg.num_mels} must equal the ConvNeXt output dims[-1]={cfg.dims[-1]}")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> VocoderConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["_class_name"] = "ADaMoSHiFiGANV1"
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Log-mel front end (torch only: slaney mel filterbank, magnitude STFT)


def _hz_to_mel_slaney(freq: float) -> float:
    f_sp = 200.0 / 3
    mel = freq / f_sp
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    if freq >= min_log_hz:
        mel = min_log_hz / f_sp + math.log(freq / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mels: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    return torch.where(log_region, min_log_hz * torch.exp(logstep * (mels - min_log_mel)), freqs)


def slaney_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular mel filters [n_freqs, n_mels] on the slaney mel scale with slaney (area) normalisation."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel_slaney(f_min), _hz_to_mel_slaney(f_max), n_mels + 2)
    f_pts = _mel_to_hz_slaney(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])).unsqueeze(0)


class _Spectrogram(nn.Module):
    window: torch.Tensor

    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 3:
            y = y.squeeze(1)
        pad = ((self.win_length - self.hop_length) // 2, (self.win_length - self.hop_length + 1) // 2)
        y = F.pad(y.unsqueeze(1), pad, mode="reflect").squeeze(1)
        spec = torch.stft(
            y.float(), self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=self.window,
            center=False, normalized=False, onesided=True, return_complex=True,
        )
        spec = torch.view_as_real(spec)
        return torch.sqrt(spec.pow(2).sum(-1) + 1e-6)


class _MelScale(nn.Module):
    fb: torch.Tensor

    def __init__(self, fb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("fb", fb)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class LogMelSpectrogram(nn.Module):
    """Audio [B, N] at 44.1 kHz -> log-mel [B, n_mels, N / hop] (reflect padding, no centring)."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.spectrogram = _Spectrogram(cfg.n_fft, cfg.win_length, cfg.hop_length)
        fb = slaney_mel_filterbank(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sampling_rate)
        self.mel_scale = _MelScale(fb)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.mel_scale(self.spectrogram(audio)), min=1e-5))


# ----------------------------------------------------------------------------------------------------------------------
# ConvNeXt backbone


class _ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of [B, C, T] (explicit mean/variance, as trained)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None] * x + self.bias[:, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 1)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).permute(0, 2, 1)


class ConvNeXtEncoder(nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        dims = cfg.dims
        stem = nn.Sequential(
            nn.Conv1d(cfg.input_channels, dims[0], kernel_size=7, padding=3, padding_mode="replicate"),
            _ChannelsFirstLayerNorm(dims[0]),
        )
        mids = [nn.Sequential(_ChannelsFirstLayerNorm(dims[i]), nn.Conv1d(dims[i], dims[i + 1], 1))
                for i in range(len(dims) - 1)]
        self.channel_layers = nn.ModuleList([stem, *mids])
        self.stages = nn.ModuleList(
            [nn.Sequential(*[ConvNeXtBlock(dims[i], cfg.kernel_sizes[0]) for _ in range(depth)])
             for i, depth in enumerate(cfg.depths)]
        )
        self.norm = _ChannelsFirstLayerNorm(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for channel_layer, stage in zip(self.channel_layers, self.stages, strict=True):
            x = stage(channel_layer(x))
        return self.norm(x)


# ----------------------------------------------------------------------------------------------------------------------
# HiFi-GAN head


def _weight_norm(module: nn.Module) -> nn.Module:
    """Old-style weight norm (``weight_g``/``weight_v`` over dim 0), the layout of the real checkpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(module)


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            [_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_padding(kernel, d)))
             for d in dilations]
        )
        self.convs2 = nn.ModuleList(
            [_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_padding(kernel)))
             for _ in dilations]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.silu(c1(F.silu(x))))
        return x


class HiFiGANGenerator(nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        uic = cfg.upsample_initial_channel
        self.conv_pre = _weight_norm(
            nn.Conv1d(cfg.num_mels, uic, cfg.pre_conv_kernel_size, 1, padding=_padding(cfg.pre_conv_kernel_size))
        )
        self.ups = nn.ModuleList(
            [_weight_norm(nn.ConvTranspose1d(uic // 2**i, uic // 2 ** (i + 1), k, u, padding=(k - u) // 2))
             for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True))]
        )
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.resblocks = nn.ModuleList(
            [ResBlock1(uic // 2 ** (i + 1), k, d)
             for i in range(len(self.ups))
             for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)]
        )
        ch = uic // 2 ** len(self.ups)
        self.conv_post = _weight_norm(
            nn.Conv1d(ch, 1, cfg.post_conv_kernel_size, 1, padding=_padding(cfg.post_conv_kernel_size))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.silu(x))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / self.num_kernels
        return torch.tanh(self.conv_post(F.silu(x)))


class MusicVocoder(nn.Module):
    """ADaMoSHiFiGANV1: log-mel [B, 128, T] -> waveform [B, 1, T * 512] at 44.1 kHz."""

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ConvNeXtEncoder(config)
        self.head = HiFiGANGenerator(config)
        self.mel_transform = LogMelSpectrogram(config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(mel))

    decode = forward

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] at 44.1 kHz -> log-mel [B, 128, N / 512]."""
        return self.mel_transform(audio)


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every old-style weight norm in ``module`` by its computed plain weight (in place); for export."""
    for sub in module.modules():
        if hasattr(sub, "weight_g") and hasattr(sub, "weight_v"):
            torch.nn.utils.remove_weight_norm(sub)
    return module
