"""``tritone export``: checkpoint (or tiny preset) → ONNX → (TensorRT) → a complete Triton model repository."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export models into a Triton model repository",
        description="Export ACE-Step 1.5 (and the LLM stage) into a model repository that `tritone triton` serves. "
        "Re-running skips finished artifacts.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=["tiny"], help="build the tiny random preset (no download)")
    src.add_argument("--checkpoint", type=Path, help="an AceStepPipeline.save_pretrained directory")
    p.add_argument("--target", choices=["cpu", "gpu"], default="cpu", help="cpu: ONNX Runtime models; gpu: TensorRT")
    p.add_argument("--out", type=Path, required=True, help="model repository folder to write")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (presets, ONNX for gpu builds, caches)")
    p.add_argument("--version", type=int, default=1, help="model version folder for a --checkpoint export")
    p.add_argument("--version-set", default=None, help="name of this checkpoint's version set (default: its variant)")
    p.add_argument("--skip-llm", action="store_true", help="do not write the lyricist/lm models")
    p.add_argument("--lyricist-dir", type=Path, default=None, help="HF folder of the lyricist chat model")
    p.add_argument("--lm-dir", type=Path, default=None, help="HF folder of the ACE-Step 5 Hz LM")
    p.add_argument("--lyricist-endpoint", default=None, help="OpenAI-compatible base URL for the lyricist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    repo: Path = args.out
    work: Path = args.work or repo.parent / f".{repo.name}-work"
    repo.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.preset == "tiny":
        export_tiny(repo=repo, work=work, target=args.target)
        llm_preset: str | None = "tiny"
    else:
        export_checkpoint(
            args.checkpoint,
            repo=repo,
            work=work,
            target=args.target,
            version=args.version,
            version_set=args.version_set,
        )
        llm_preset = None
    if not args.skip_llm:
        _export_llm(repo, args, llm_preset)
    print(f"repository ready at {repo} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


def export_checkpoint(
    checkpoint: Path, *, repo: Path, work: Path, target: str, version: int, version_set: str | None
) -> None:
    from export.acestep15.checkpoint import load_pipeline, read_dims
    from export.repository import NETWORKS, export_networks, write_sampler

    print(f"loading {checkpoint} ...", flush=True)
    pipe = load_pipeline(checkpoint)
    dims = read_dims(checkpoint)
    variant = str(pipe.transformer.config.get("model_version") or ("turbo" if dims.is_turbo else "base"))
    export_networks(pipe=pipe, dims=dims, repo=repo, work=work, version=version, target=target)  # type: ignore[arg-type]
    write_sampler(
        repo=repo,
        pipe=pipe,
        dims=dims,
        version_set=version_set or variant,
        versions={name: version for name in NETWORKS},
        variant=variant,
    )


def export_tiny(*, repo: Path, work: Path, target: str) -> None:
    """Version set "turbo" = every network at version 1; "sft" = the base-style DiT as ``dit`` version 2 with the same
    encoders and VAE — two versions of one model, as in a real deployment that serves turbo and SFT weights."""
    from export.acestep15.checkpoint import load_pipeline, read_dims
    from export.acestep15.presets import build_tiny
    from export.repository import NETWORKS, export_networks, write_sampler

    for variant, version, networks in (("turbo", 1, NETWORKS), ("sft", 2, ("dit",))):
        folder = build_tiny(work / "presets" / f"acestep15-tiny-{variant}", variant=variant)  # type: ignore[arg-type]
        pipe = load_pipeline(folder)
        dims = read_dims(folder)
        print(f"tiny {variant}: exporting {', '.join(networks)} as version {version}", flush=True)
        export_networks(
            pipe=pipe,
            dims=dims,
            repo=repo,
            work=work,
            version=version,
            target=target,
            networks=networks,  # type: ignore[arg-type]
        )
        versions = {name: 1 for name in NETWORKS} | {"dit": version}
        write_sampler(repo=repo, pipe=pipe, dims=dims, version_set=variant, versions=versions, variant=variant)


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
