"""The families one ``sampler`` model serves: ACE-Step 1.5 (``assets/pipeline.json``) and ACE-Step v1
(``assets/acestep_v1/pipeline.json``), whichever the repository holds. Parses requests, picks the family's runner and
describes what is served (the answer to ``{"describe": true}``).

Used by the Triton model (``sampler/model.py``, networks called through BLS) and in-process (benchmarks and tests,
:class:`~model_repository.inprocess.OrtNetworkCaller`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from model_repository.acestep15_runner import Assets, NetworkCaller, SongRunner
from model_repository.acestep_v1_runner import V1Assets, V1SongRunner
from model_repository.sampler_request import FAMILIES, RequestError, SamplerRequest, parse_request

logger = logging.getLogger(__name__)

V1_ASSETS = "acestep_v1"


class SamplerFamilies:
    def __init__(self, assets_root: Path, call: NetworkCaller) -> None:
        root = Path(assets_root)
        self.runners: dict[str, SongRunner | V1SongRunner] = {}
        if (root / "pipeline.json").is_file():
            self.runners["acestep15"] = SongRunner(Assets(root), call)
        if (root / V1_ASSETS / "pipeline.json").is_file():
            self.runners["acestep_v1"] = V1SongRunner(V1Assets(root / V1_ASSETS), call)
        if not self.runners:
            raise FileNotFoundError(
                f"sampler: no family manifest under {root} (pipeline.json for acestep15, "
                f"{V1_ASSETS}/pipeline.json for acestep_v1); run `tritone export`"
            )
        logger.info("sampler serves %s", ", ".join(self.runners))

    @property
    def default_family(self) -> str:
        return next(f for f in FAMILIES if f in self.runners)

    def parse(self, raw: bytes | str, *, has_src_audio: bool, has_reference_audio: bool = False) -> SamplerRequest:
        v15 = self.runners.get("acestep15")
        codebook = v15.assets.codebook_size if isinstance(v15, SongRunner) else None
        req = parse_request(
            raw, codebook_size=codebook, has_src_audio=has_src_audio, has_reference_audio=has_reference_audio
        )
        if not req.describe and req.family not in self.runners:
            raise RequestError(
                f"sampler: field 'family' is {req.family!r}, which this repository does not serve; "
                f"served: {sorted(self.runners)}"
            )
        return req

    def runner(self, req: SamplerRequest) -> SongRunner | V1SongRunner:
        return self.runners[req.family]

    def sample_rate(self, family: str) -> int:
        runner = self.runners[family]
        if isinstance(runner, V1SongRunner):
            return runner.assets.sample_rate
        return int(runner.assets.dims["sample_rate"])

    def describe(self) -> dict[str, Any]:
        """Families, their version sets (network versions, variant) and defaults."""
        families: dict[str, Any] = {}
        for family, runner in self.runners.items():
            if isinstance(runner, V1SongRunner):
                families[family] = runner.assets.describe()
                continue
            manifest = runner.assets.manifest
            families[family] = {
                "version_sets": {
                    name: {"versions": dict(s["versions"]), "variant": s.get("variant"), "is_turbo": s.get("is_turbo")}
                    for name, s in sorted(manifest["version_sets"].items())
                },
                "default_version_set": manifest["default_version_set"],
                "sample_rate": self.sample_rate(family),
            }
        return {"families": families, "default_family": self.default_family}
