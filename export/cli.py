"""``tritone export``: checkpoint (or tiny preset) → ONNX → (TensorRT) → a complete Triton model repository."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from model_repository.facts.families import FAMILIES

if TYPE_CHECKING:
    from export.repository import FamilyExport

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A wrong combination of arguments; the message says what to change."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export models into a Triton model repository",
        description="Export ACE-Step 1.5 and/or ACE-Step v1 (and the LLM stage) into a model repository that "
        "`tritone triton` serves. Re-running skips finished artifacts.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=["tiny"], help="build the tiny random preset (no download)")
    src.add_argument(
        "--checkpoint",
        type=Path,
        help="an ACE-Step 1.5 AceStepPipeline.save_pretrained directory, or an ACE-Step v1 folder "
        "(ace_step_transformer/ music_dcae_f8c8/ music_vocoder/ umt5-base/)",
    )
    p.add_argument(
        "--stems-checkpoint",
        type=Path,
        action="append",
        default=None,
        metavar="PATH",
        help="an HT-Demucs checkpoint for the stems/separator models: a .th or .safetensors file (htdemucs, "
        "htdemucs_6s) or a bag folder (htdemucs_ft.yaml + its .th files); repeat for a 4- and a 6-source model. "
        "--preset tiny exports the tiny stems models unless this is given",
    )
    p.add_argument(
        "--family",
        choices=[*FAMILIES, "all"],
        default=None,
        help="model family to export (default: all for --preset tiny; detected from the folder for --checkpoint)",
    )
    p.add_argument("--target", choices=["cpu", "gpu"], default="cpu", help="cpu: ONNX Runtime models; gpu: TensorRT")
    p.add_argument("--out", type=Path, required=True, help="model repository folder to write")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (presets, ONNX for gpu builds, caches)")
    p.add_argument("--version", type=int, default=1, help="model version folder for a --checkpoint export")
    p.add_argument("--version-set", default=None, help="name of this checkpoint's version set (default: its variant)")
    p.add_argument("--skip-llm", action="store_true", help="do not write the lyricist/lm models")
    p.add_argument("--lyricist-dir", type=Path, default=None, help="HF folder of the lyricist chat model")
    p.add_argument("--lm-dir", type=Path, default=None, help="HF folder of the ACE-Step 5 Hz LM")
    p.add_argument("--lyricist-endpoint", default=None, help="OpenAI-compatible base URL for the lyricist")
    p.add_argument("--verbose", action="store_true", help="also show third-party warnings and progress bars")
    p.set_defaults(func=run)


def quiet_third_party() -> None:
    """Silence the libraries' own noise at its source (torch/onnx deprecation warnings, "torchvision is not
    installed", Hugging Face progress bars): the export prints its own progress lines only (``--verbose`` keeps it)."""
    import os
    import warnings

    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # child processes too
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        import torch  # noqa: F401  (its import resets the torch loggers' levels: set them after it)
    except ImportError:
        pass
    for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "onnx_ir", "transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("transformers.utils.logging", "diffusers.utils.logging"):
        try:
            __import__(module, fromlist=["disable_progress_bar"]).disable_progress_bar()
        except ImportError:
            pass


def run(args: argparse.Namespace) -> int:
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    if not getattr(args, "verbose", False):
        quiet_third_party()
        # The export's own INFO lines repeat its progress lines with timestamps; warnings still show.
        logging.getLogger("export").setLevel(logging.WARNING)
    repo: Path = args.out
    work: Path = args.work or repo.parent / f".{repo.name}-work"
    repo.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stems_checkpoints = getattr(args, "stems_checkpoint", None)
    if not (args.preset or args.checkpoint or stems_checkpoints):
        raise ExportError("give --preset tiny, --checkpoint PATH or --stems-checkpoint PATH")
    stems = _stems_plan(stems_checkpoints, work, tiny=args.preset == "tiny" and args.family in (None, "all"))
    if args.preset == "tiny":
        families = FAMILIES if args.family in (None, "all") else (args.family,)
        export_tiny(repo=repo, work=work, target=args.target, families=families, stems=stems)
        llm_preset: str | None = "tiny"
    elif args.checkpoint is None:
        from export.repository import export_network_sets

        assert stems is not None
        export_network_sets(stems.sets, repo=repo, work=work, target=args.target)
        stems.write_assets(repo)
        llm_preset = None
    else:
        family = checkpoint_family(args.checkpoint, args.family)
        export_checkpoint(
            args.checkpoint,
            repo=repo,
            work=work,
            target=args.target,
            version=args.version,
            version_set=args.version_set,
            family=family,
            stems=stems,
        )
        llm_preset = None
    if not args.skip_llm:
        _export_llm(repo, args, llm_preset)
    print(f"repository ready at {repo} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


def checkpoint_family(checkpoint: Path, requested: str | None) -> str:
    """The family of a checkpoint folder, from its layout; ``requested`` (``--family``) must agree with it.

    Each family's exporter recognises its own layout; the first family (ACE-Step 1.5) is the fallback, whose loader
    names whatever is missing."""
    from export.repository import exporter

    if requested == "all":
        raise ExportError("--family all applies to --preset tiny; a --checkpoint folder holds one family")
    detected = next((f for f in FAMILIES[1:] if exporter(f).is_checkpoint(checkpoint)), FAMILIES[0])
    if requested is not None and requested != detected:
        hint = exporter(detected).LAYOUT_HINT
        wanted = exporter(requested).LAYOUT_HINT
        raise ExportError(
            f"--family {requested}: {checkpoint} is an {detected} checkpoint (it lacks {wanted}; it looks like "
            f"{hint})"
        )
    return detected


def export_checkpoint(
    checkpoint: Path,
    *,
    repo: Path,
    work: Path,
    target: str,
    version: int,
    version_set: str | None,
    family: str = FAMILIES[0],
    stems: FamilyExport | None = None,
) -> None:
    from export.repository import export_network_sets, exporter

    print(f"loading {checkpoint} ({family}) ...", flush=True)
    plan = exporter(family).from_checkpoint(checkpoint, version=version, version_set=version_set)
    plans = [plan, *([stems] if stems is not None else [])]
    export_network_sets([s for p in plans for s in p.sets], repo=repo, work=work, target=target)  # type: ignore[arg-type]
    for p in plans:
        p.write_assets(repo)


def export_tiny(
    *, repo: Path, work: Path, target: str, families: tuple[str, ...] = FAMILIES, stems: FamilyExport | None = None
) -> None:
    """Every family's tiny preset (see each exporter's ``tiny``) and ``stems`` (the stems models). All ONNX exports
    share one pool of workers (the families' small networks fill the gaps beside the large ones)."""
    from export.repository import export_network_sets, exporter

    plans: list[FamilyExport] = [exporter(family).tiny(work) for family in families]
    if stems is not None:
        plans.append(stems)
    export_network_sets([s for plan in plans for s in plan.sets], repo=repo, work=work, target=target)  # type: ignore[arg-type]
    for plan in plans:
        plan.write_assets(repo)


def _stems_plan(checkpoints: list[Path] | None, work: Path, *, tiny: bool) -> FamilyExport | None:
    """The stems models: from ``--stems-checkpoint`` files, else the tiny presets when ``tiny``, else none."""
    from export.stems import repository as stems

    if checkpoints:
        print(f"loading stems checkpoint(s) {', '.join(str(p) for p in checkpoints)} ...", flush=True)
        return stems.from_checkpoints(checkpoints)
    return stems.tiny(work) if tiny else None


def _export_llm(repo: Path, args: argparse.Namespace, preset: str | None) -> None:
    try:
        from export.llm import add_llm_models
    except ImportError:
        print("LLM stage not available in this build; skipped lyricist/lm", flush=True)
        return
    names = add_llm_models(
        repo,
        preset=preset if not (args.lyricist_dir or args.lm_dir or args.lyricist_endpoint) else None,
        lyricist_dir=args.lyricist_dir,
        lm_dir=args.lm_dir,
        lyricist_endpoint=args.lyricist_endpoint,
        target=args.target,
    )
    print(f"LLM models written: {', '.join(names) or 'none'}", flush=True)


def tiny_export_argv(out: Path, *, work: Path | None = None, skip_llm: bool = False) -> list[str]:
    """The `tritone export --preset tiny --target cpu` command line (as argv, this interpreter) that tests, benches
    and the demo run to get a complete tiny repository."""
    import sys

    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "export",
        "--preset",
        "tiny",
        "--target",
        "cpu",
        "--out",
        str(out),
    ]
    if work is not None:
        argv += ["--work", str(work)]
    if skip_llm:
        argv.append("--skip-llm")
    return argv
