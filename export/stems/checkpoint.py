"""Load the HT-Demucs checkpoints an operator provides, with ``demucs_infer``'s own loaders.

Accepted (the layouts Meta's release and ``demucs_infer`` use):

* one ``.th`` file: a Demucs package (``torch.save`` of ``{"klass", "args", "kwargs", "state"}``), e.g.
  ``955717e8-8726e21a.th`` (``htdemucs``) or ``5c90dfd2-34c22ccb.th`` (``htdemucs_6s``). A name of the form
  ``<signature>-<sha256 prefix>.th`` is checked against its content, as ``demucs_infer.repo.LocalRepo`` does;
* one ``.safetensors`` file with Demucs metadata (``demucs_infer.safetensors``);
* a folder holding one bag ``.yaml`` (``models: [sig, ...]``, optional ``weights``/``segment``, e.g.
  ``htdemucs_ft.yaml``) and its ``.th`` files, or a folder with exactly one ``.th``.

Every failure an operator can cause (a missing path, a file that is no Demucs package, weights that do not fit the
architecture in the file, a model that is not HT-Demucs, a source list the service cannot use) is raised as
:class:`StemsCheckpointError` naming the file and the fix, never as a deep stack trace.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from model_repository.stems.sets import REQUIRED_SOURCES, SUPPORTED_SOURCE_COUNTS

EXAMPLES = (
    "an HT-Demucs .th file (e.g. 955717e8-8726e21a.th for htdemucs, 5c90dfd2-34c22ccb.th for htdemucs_6s), "
    "a Demucs .safetensors file, or a folder with a bag .yaml (e.g. htdemucs_ft.yaml) and its .th files"
)


class StemsCheckpointError(ValueError):
    """A stems checkpoint that cannot be served; the message names the file and what is expected."""


@dataclass
class SeparationModel:
    """One served separation model: one HTDemucs or a bag of them (same sources, rate, segment and STFT)."""

    name: str
    models: list[Any]  # demucs_infer.htdemucs.HTDemucs, eval mode
    weights: list[list[float]]  # per member, per source (the bag's weighting; all ones for a single model)
    path: Path

    @property
    def first(self) -> Any:
        return self.models[0]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.first.sources)

    @property
    def samplerate(self) -> int:
        return int(self.first.samplerate)

    @property
    def audio_channels(self) -> int:
        return int(self.first.audio_channels)

    @property
    def segment_samples(self) -> int:
        """The training segment in samples: what ``HTDemucs.valid_length`` pads every chunk to."""
        return int(Fraction(self.first.segment) * self.samplerate)

    @property
    def nfft(self) -> int:
        return int(self.first.nfft)

    @property
    def hop_length(self) -> int:
        return int(self.first.hop_length)

    @property
    def frames(self) -> int:
        """Spectrogram frames of one segment (``HTDemucs._spec`` keeps ``ceil(length / hop)``)."""
        return -(-self.segment_samples // self.hop_length)

    @property
    def freqs(self) -> int:
        return self.nfft // 2

    def reference(self) -> Any:
        """What ``demucs_infer.apply.apply_model`` takes: the model itself, or a ``BagOfModels``."""
        if len(self.models) == 1 and all(w == 1.0 for w in self.weights[0]):
            return self.first
        from demucs_infer.apply import BagOfModels

        return BagOfModels(self.models, self.weights).eval()


def load(path: str | Path) -> SeparationModel:
    """The separation model at ``path`` (see the module docstring); :class:`StemsCheckpointError` on any problem."""
    path = Path(path)
    if not path.exists():
        raise StemsCheckpointError(f"stems checkpoint {path} does not exist (expected {EXAMPLES})")
    if path.is_dir():
        return _load_folder(path)
    if path.suffix.lower() == ".th":
        model = _load_package(path)
        return _checked(SeparationModel(_name_of(path), [model], [[1.0] * len(model.sources)], path))
    if path.suffix.lower() == ".safetensors":
        return _checked(SeparationModel(path.stem, [_load_safetensors(path)], [], path))
    raise StemsCheckpointError(f"stems checkpoint {path}: unknown file type {path.suffix!r} (expected {EXAMPLES})")


def _name_of(path: Path) -> str:
    from model_repository.stems.sets import KNOWN_SIGNATURES

    signature = path.stem.split("-", 1)[0]
    return KNOWN_SIGNATURES.get(signature, signature)


def _load_package(path: Path) -> Any:
    import demucs_infer.compat  # noqa: F401 - registers the `demucs.*` aliases Meta's pickles reference
    import torch
    from demucs_infer.repo import ModelLoadingError, check_checksum
    from demucs_infer.states import set_state

    signature, _, checksum = path.stem.partition("-")
    if checksum and all(c in "0123456789abcdef" for c in checksum):
        try:
            check_checksum(path, checksum)
        except ModelLoadingError as exc:
            raise StemsCheckpointError(f"stems checkpoint {path}: {exc} (a truncated or replaced download?)") from None
    try:
        package = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, AttributeError, ImportError) as exc:
        raise StemsCheckpointError(
            f"stems checkpoint {path} is not a Demucs package ({type(exc).__name__}: {exc}); expected {EXAMPLES}"
        ) from None
    if not isinstance(package, dict):
        raise StemsCheckpointError(f"stems checkpoint {path} holds a {type(package).__name__}, not a Demucs package "
                                   "(a dict with klass/args/kwargs/state)")
    missing = [k for k in ("klass", "args", "kwargs", "state") if k not in package]
    if missing:
        raise StemsCheckpointError(f"stems checkpoint {path} is not a Demucs package: missing key(s) {missing}")
    klass = package["klass"]
    _require_htdemucs(path, klass)
    try:
        model = klass(*package["args"], **package["kwargs"])
    except TypeError as exc:
        raise StemsCheckpointError(
            f"stems checkpoint {path}: its kwargs do not build {klass.__name__}: {exc}"
        ) from None
    try:
        set_state(model, package["state"])
    except RuntimeError as exc:
        raise StemsCheckpointError(
            f"stems checkpoint {path}: the weights do not fit the architecture its kwargs describe: "
            f"{_first_lines(exc)}"
        ) from None
    return model.eval()


def _load_safetensors(path: Path) -> Any:
    from demucs_infer.safetensors import load_safetensors_model

    try:
        return load_safetensors_model(path).eval()
    except (ValueError, RuntimeError, OSError) as exc:
        raise StemsCheckpointError(f"stems checkpoint {path}: {_first_lines(exc)} (expected {EXAMPLES})") from None


def _load_folder(folder: Path) -> SeparationModel:
    import yaml

    bags = sorted(folder.glob("*.yaml"))
    packages = {p.stem.split("-", 1)[0]: p for p in sorted(folder.glob("*.th"))}
    if len(bags) > 1:
        raise StemsCheckpointError(
            f"stems checkpoint folder {folder} has {len(bags)} bag files {[b.name for b in bags]}; pass one bag's "
            "folder (or the .th file itself)"
        )
    if not bags:
        if len(packages) == 1:
            return load(next(iter(packages.values())))
        raise StemsCheckpointError(
            f"stems checkpoint folder {folder} has no bag .yaml and {len(packages)} .th files; expected {EXAMPLES}"
        )
    bag_file = bags[0]
    try:
        bag = yaml.safe_load(bag_file.read_text())
        signatures = list(bag["models"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise StemsCheckpointError(f"{bag_file}: not a Demucs bag (needs `models: [signature, ...]`): {exc}") from None
    absent = [s for s in signatures if s not in packages]
    if absent:
        raise StemsCheckpointError(
            f"{bag_file} lists model(s) {absent} that are not in {folder} (expected files named <signature>-*.th)"
        )
    models = [_load_package(packages[s]) for s in signatures]
    weights = bag.get("weights") or [[1.0] * len(models[0].sources) for _ in models]
    if len(weights) != len(models) or any(len(w) != len(models[0].sources) for w in weights):
        raise StemsCheckpointError(f"{bag_file}: `weights` must be {len(models)} rows of {len(models[0].sources)}")
    if bag.get("segment") is not None:
        raise StemsCheckpointError(f"{bag_file}: a bag `segment` override is not supported for HT-Demucs")
    return _checked(SeparationModel(bag_file.stem, models, [[float(v) for v in w] for w in weights], folder))


def _require_htdemucs(path: Path, klass: Any) -> None:
    from demucs_infer.htdemucs import HTDemucs

    if not (isinstance(klass, type) and issubclass(klass, HTDemucs)):
        name = getattr(klass, "__name__", repr(klass))
        raise StemsCheckpointError(
            f"stems checkpoint {path} holds a {name} model; only HT-Demucs (v4: htdemucs, htdemucs_6s, htdemucs_ft) "
            "is served"
        )


def _checked(model: SeparationModel) -> SeparationModel:
    """Members agree with each other and the service can use the model."""
    if not model.weights:
        model.weights = [[1.0] * len(model.first.sources)]
    path = model.path
    first = model.first
    for member in model.models:
        _require_htdemucs(path, type(member))
        for attr in ("sources", "samplerate", "audio_channels", "segment", "nfft", "hop_length"):
            if getattr(member, attr) != getattr(first, attr):
                raise StemsCheckpointError(
                    f"stems checkpoint {path}: bag members disagree on {attr} "
                    f"({getattr(member, attr)!r} vs {getattr(first, attr)!r})"
                )
        if not member.cac:
            raise StemsCheckpointError(f"stems checkpoint {path}: cac=False (Wiener masking) is not served; every "
                                       "released HT-Demucs uses complex-as-channels")
        if not member.use_train_segment:
            raise StemsCheckpointError(f"stems checkpoint {path}: use_train_segment=False is not served")
    if first.audio_channels != 2:
        raise StemsCheckpointError(f"stems checkpoint {path}: {first.audio_channels} audio channels; need stereo (2)")
    if len(first.sources) not in SUPPORTED_SOURCE_COUNTS or not set(REQUIRED_SOURCES) <= set(first.sources):
        raise StemsCheckpointError(
            f"stems checkpoint {path}: sources {list(first.sources)}; need {SUPPORTED_SOURCE_COUNTS} sources "
            f"including {list(REQUIRED_SOURCES)}"
        )
    return model


def save_package(model: Any, path: Path) -> Path:
    """Write ``model`` as a Demucs package, the format of Meta's ``.th`` files (``demucs.states.serialize_model``
    without the training args): the class, the constructor arguments ``capture_init`` recorded, the state dict."""
    import torch

    args, kwargs = model._init_args_kwargs
    package = {"klass": type(model), "args": args, "kwargs": kwargs, "state": model.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(package, tmp)
    tmp.replace(path)
    return path


def _first_lines(exc: BaseException, lines: int = 4) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[:lines]) + (" ..." if len(text) > lines else "")
