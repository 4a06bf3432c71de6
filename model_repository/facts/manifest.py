"""The sampler manifest, ``pipeline.json``: one typed class that export writes and the family runners read.

One manifest per family, in the sampler's assets folder (``assets/<FamilyFacts.assets_dir>/pipeline.json``)::

    {"family": "acestep15",
     "dims": {...},                          # the network dimensions and the contract limits the runner needs
     "buckets": {"frames": [...], ...},      # the contracts' length buckets, per axis
     "version_sets": {"turbo": {"versions": {"dit": "1", ...}, "variant": "turbo", "is_turbo": true}},
     "default_version_set": "turbo"}

A version set names which version of each network belongs together (one exported checkpoint); exporting another
checkpoint as a new version adds a set and keeps the others. Dependency-free: read by the serving code, written by
export, never by the orchestrator (which asks the running ``sampler`` to describe itself instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_repository.facts.families import FAMILY_FACTS, family_facts

MANIFEST_FILE = "pipeline.json"


class ManifestError(ValueError):
    """A manifest that is missing, malformed, or does not fit what is asked of it."""


@dataclass
class VersionSetEntry:
    versions: dict[str, str]
    variant: str | None = None
    # Distilled (turbo) checkpoints have guidance built in; None where the family has no such variant.
    is_turbo: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"versions": dict(self.versions), "variant": self.variant}
        if self.is_turbo is not None:
            out["is_turbo"] = self.is_turbo
        return out


@dataclass
class SamplerManifest:
    family: str
    dims: dict[str, Any]
    buckets: dict[str, list[int]]
    version_sets: dict[str, VersionSetEntry] = field(default_factory=dict)
    default_version_set: str | None = None

    # ---- where ---------------------------------------------------------------------------------------------------
    @staticmethod
    def folder(assets_root: Path, family: str) -> Path:
        """The family's folder under the sampler's ``assets/``."""
        sub = family_facts(family).assets_dir
        return Path(assets_root) / sub if sub else Path(assets_root)

    @staticmethod
    def reserved_names() -> tuple[str, ...]:
        """Names a version set may not take: they are other families' asset folders."""
        return tuple(f.assets_dir for f in FAMILY_FACTS.values() if f.assets_dir)

    # ---- read / write --------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, folder: Path) -> SamplerManifest:
        path = Path(folder) / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"no sampler manifest at {path}; run `tritone export`") from None
        except json.JSONDecodeError as exc:
            raise ManifestError(f"sampler manifest {path} is not JSON ({exc}); re-run `tritone export`") from None
        try:
            sets = {
                name: VersionSetEntry(
                    versions={str(k): str(v) for k, v in entry["versions"].items()},
                    variant=entry.get("variant"),
                    is_turbo=entry.get("is_turbo"),
                )
                for name, entry in raw["version_sets"].items()
            }
            manifest = cls(
                family=str(raw["family"]),
                dims=dict(raw["dims"]),
                buckets={axis: [int(b) for b in values] for axis, values in raw["buckets"].items()},
                version_sets=sets,
                default_version_set=raw.get("default_version_set"),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ManifestError(f"sampler manifest {path} is malformed ({exc!r}); re-run `tritone export`") from None
        if not manifest.version_sets:
            raise ManifestError(f"sampler manifest {path} lists no version set; re-run `tritone export`")
        return manifest

    @classmethod
    def read_or_new(
        cls, folder: Path, *, family: str, dims: Mapping[str, Any], buckets: Mapping[str, Any]
    ) -> SamplerManifest:
        """The manifest in ``folder`` with ``dims`` and ``buckets`` replaced (version sets kept), or a new one."""
        fresh = cls(family=family, dims=dict(dims), buckets={k: [int(b) for b in v] for k, v in buckets.items()})
        if not (Path(folder) / MANIFEST_FILE).is_file():
            return fresh
        old = cls.read(folder)
        if old.family != family:
            raise ManifestError(f"{Path(folder) / MANIFEST_FILE} belongs to family {old.family!r}, not {family!r}")
        fresh.version_sets, fresh.default_version_set = old.version_sets, old.default_version_set
        return fresh

    def write(self, folder: Path) -> Path:
        """Atomically (a reader never sees half a file); returns the path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        tmp.replace(path)
        return path

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dims": dict(self.dims),
            "buckets": {k: list(v) for k, v in self.buckets.items()},
            "version_sets": {name: s.to_json() for name, s in self.version_sets.items()},
            "default_version_set": self.default_version_set,
        }

    # ---- version sets --------------------------------------------------------------------------------------------
    def add_version_set(
        self, name: str, versions: Mapping[str, int | str], *, variant: str | None, is_turbo: bool | None = None
    ) -> None:
        """Add or replace set ``name``; the first set added becomes the default."""
        if name in self.reserved_names():
            raise ManifestError(f"version set name {name!r} is reserved (a family's asset folder); choose another")
        self.version_sets[name] = VersionSetEntry({k: str(v) for k, v in versions.items()}, variant, is_turbo)
        if self.default_version_set is None:
            self.default_version_set = name

    def version_set(self, name: str | None) -> tuple[str, VersionSetEntry]:
        """The named set (None: the default); ``ManifestError`` naming the served sets otherwise."""
        chosen = name or self.default_version_set or next(iter(self.version_sets))
        entry = self.version_sets.get(chosen)
        if entry is None:
            raise ManifestError(
                f"field 'version_set' must be one of {sorted(self.version_sets)} for family {self.family}, "
                f"got {chosen!r}"
            )
        return chosen, entry

    def describe_sets(self) -> dict[str, Any]:
        """The sets as the sampler's ``describe`` answer lists them."""
        return {
            "version_sets": {name: s.to_json() for name, s in sorted(self.version_sets.items())},
            "default_version_set": self.default_version_set,
        }

    # ---- dims ----------------------------------------------------------------------------------------------------
    def dim(self, name: str) -> Any:
        try:
            return self.dims[name]
        except KeyError:
            raise ManifestError(
                f"sampler manifest of family {self.family} has no dimension {name!r}; re-export with this version "
                "of `tritone export`"
            ) from None
