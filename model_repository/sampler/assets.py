"""What every family runner shares: its assets (the manifest plus version sets loaded once, shared by all songs) and
the runner plumbing around its song generator (:class:`RunnerBase`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from model_repository.facts.manifest import ManifestError, SamplerManifest, VersionSetEntry
from model_repository.sampler.protocol import NetworkCaller, SongResult, SongSteps, drive
from model_repository.sampler.request import RequestError, SamplerRequest

SetT = TypeVar("SetT")


class FamilyAssets(Generic[SetT]):
    """``<assets>/pipeline.json`` and each version set's files. Subclasses say how one set loads (``load_set``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = SamplerManifest.read(self.root)
        self.dims: dict[str, Any] = self.manifest.dims
        self.buckets: dict[str, list[int]] = self.manifest.buckets
        self._sets: dict[str, SetT] = {}
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return int(self.dims["sample_rate"])

    def load_set(self, name: str, entry: VersionSetEntry) -> SetT:
        raise NotImplementedError

    def version_set(self, name: str | None) -> SetT:
        """The named set (None: the default), loaded on first use; a :class:`RequestError` naming the served sets."""
        try:
            name, entry = self.manifest.version_set(name)
        except ManifestError as exc:
            raise RequestError(f"sampler: {exc}") from None
        with self._lock:
            if name not in self._sets:
                self._sets[name] = self.load_set(name, entry)
            return self._sets[name]

    def describe(self) -> dict[str, Any]:
        return self.manifest.describe_sets() | {"sample_rate": self.sample_rate}


AssetsT = TypeVar("AssetsT", bound=FamilyAssets[Any])


class RunnerBase(Generic[AssetsT]):
    """The :class:`~model_repository.sampler.protocol.FamilyRunner` plumbing; a family adds ``steps``."""

    family: ClassVar[str]
    assets_type: ClassVar[type[FamilyAssets[Any]]]

    def __init__(self, assets: AssetsT | Path, call: NetworkCaller) -> None:
        self.assets: AssetsT = assets if isinstance(assets, FamilyAssets) else self.assets_type(assets)  # type: ignore[assignment]
        self.call = call

    @property
    def manifest(self) -> SamplerManifest:
        return self.assets.manifest

    @property
    def sample_rate(self) -> int:
        return self.assets.sample_rate

    def parse_limits(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return self.assets.describe()

    def steps(self, req: SamplerRequest, **kwargs: Any) -> SongSteps:
        raise NotImplementedError

    def run(self, req: SamplerRequest, **kwargs: Any) -> SongResult:
        """Returns (audio [B, 2, S] float32 at the family's rate, the seeds used, generation info): :meth:`steps`
        driven one call at a time through this runner's caller (keywords as :meth:`steps`)."""
        return drive(self.steps(req, **kwargs), self.call)
