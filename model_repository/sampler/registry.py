"""The families one ``sampler`` model serves, and the dispatch to their runners.

:data:`RUNNERS` maps a family name (:mod:`model_repository.facts.families`) to its runner class, imported only when
the repository holds that family's manifest (``assets/<assets_dir>/pipeline.json``). The ``sampler`` Triton model
(networks called through BLS) and in-process callers (benchmarks and tests,
:class:`~model_repository.onnx.inprocess.OrtNetworkCaller`) both go through :class:`SamplerFamilies`: parse a request,
pick its runner, describe what is served (the answer to ``{"describe": true}``).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from model_repository.facts.families import FAMILIES
from model_repository.facts.manifest import MANIFEST_FILE, SamplerManifest
from model_repository.sampler.protocol import FamilyRunner, NetworkCaller
from model_repository.sampler.request import RequestError, SamplerRequest, parse_request

logger = logging.getLogger(__name__)

# family -> "module:Class" of its runner. A new family adds one line here (and its facts entry).
RUNNERS: dict[str, str] = {
    "acestep15": "model_repository.acestep15.runner:SongRunner",
    "acestep_v1": "model_repository.acestep_v1.runner:V1SongRunner",
}


def runner_class(family: str) -> type[FamilyRunner]:
    try:
        module, _, name = RUNNERS[family].partition(":")
    except KeyError:
        raise ValueError(f"no runner registered for family {family!r}; registered: {sorted(RUNNERS)}") from None
    cls: type[FamilyRunner] = getattr(importlib.import_module(module), name)
    return cls


class SamplerFamilies:
    def __init__(self, assets_root: Path, call: NetworkCaller) -> None:
        root = Path(assets_root)
        self.runners: dict[str, FamilyRunner] = {}
        for family in FAMILIES:
            folder = SamplerManifest.folder(root, family)
            if (folder / MANIFEST_FILE).is_file():
                self.runners[family] = runner_class(family)(folder, call)
        if not self.runners:
            places = ", ".join(
                f"{SamplerManifest.folder(Path('.'), f) / MANIFEST_FILE} for {f}" for f in FAMILIES
            )
            raise FileNotFoundError(f"sampler: no family manifest under {root} ({places}); run `tritone export`")
        self._limits: dict[str, Any] = {}
        for runner in self.runners.values():
            self._limits.update(runner.parse_limits())
        logger.info("sampler serves %s", ", ".join(self.runners))

    @property
    def default_family(self) -> str:
        return next(f for f in FAMILIES if f in self.runners)

    def parse(self, raw: bytes | str, *, has_src_audio: bool, has_reference_audio: bool = False) -> SamplerRequest:
        req = parse_request(
            raw,
            codebook_size=self._limits.get("codebook_size"),
            has_src_audio=has_src_audio,
            has_reference_audio=has_reference_audio,
        )
        if not req.describe and req.family not in self.runners:
            raise RequestError(
                f"sampler: field 'family' is {req.family!r}, which this repository does not serve; "
                f"served: {sorted(self.runners)}"
            )
        return req

    def runner(self, req: SamplerRequest) -> FamilyRunner:
        return self.runners[req.family]

    def sample_rate(self, family: str) -> int:
        return self.runners[family].sample_rate

    def describe(self) -> dict[str, Any]:
        """Families, their version sets (network versions, variant) and defaults."""
        families = {family: runner.describe() for family, runner in self.runners.items()}
        return {"families": families, "default_family": self.default_family}
