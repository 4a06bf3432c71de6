"""``tritone export``: checkpoint (or tiny preset) → ONNX → (TensorRT) → a complete Triton model repository."""

from __future__ import annotations

import argparse
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

FAMILIES = ("acestep15", "acestep_v1")


class ExportError(RuntimeError):
    """A wrong combination of arguments; the message says what to change."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export models into a Triton model repository",
        description="Export ACE-Step 1.5 and/or ACE-Step v1 (and the LLM stage) into a model repository that "
        "`tritone triton` serves. Re-running skips finished artifacts.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=["tiny"], help="build the tiny random preset (no download)")
    src.add_argument(
        "--checkpoint",
        type=Path,
        help="an ACE-Step 1.5 AceStepPipeline.save_pretrained directory, or an ACE-Step v1 folder "
        "(ace_step_transformer/ music_dcae_f8c8/ music_vocoder/ umt5-base/)",
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    repo: Path = args.out
    work: Path = args.work or repo.parent / f".{repo.name}-work"
    repo.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.preset == "tiny":
        families = FAMILIES if args.family in (None, "all") else (args.family,)
        export_tiny(repo=repo, work=work, target=args.target, families=families)
        llm_preset: str | None = "tiny"
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
        )
        llm_preset = None
    if not args.skip_llm:
        _export_llm(repo, args, llm_preset)
    print(f"repository ready at {repo} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


def checkpoint_family(checkpoint: Path, requested: str | None) -> str:
    """The family of a checkpoint folder, from its layout; ``requested`` (``--family``) must agree with it."""
    from export.acestep_v1.repository import is_v1_checkpoint

    detected = "acestep_v1" if is_v1_checkpoint(checkpoint) else "acestep15"
    if requested == "all":
        raise ExportError("--family all applies to --preset tiny; a --checkpoint folder holds one family")
    if requested is not None and requested != detected:
        hint = (
            "it has the ACE-Step v1 folders ace_step_transformer/ music_dcae_f8c8/ music_vocoder/ umt5-base/"
            if detected == "acestep_v1"
            else "it lacks the ACE-Step v1 folders (ace_step_transformer/ music_dcae_f8c8/ music_vocoder/ umt5-base/)"
        )
        raise ExportError(f"--family {requested}: {checkpoint} is an {detected} checkpoint ({hint})")
    return detected


def export_checkpoint(
    checkpoint: Path,
    *,
    repo: Path,
    work: Path,
    target: str,
    version: int,
    version_set: str | None,
    family: str = "acestep15",
) -> None:
    from export.repository import NETWORKS, acestep15_networks, export_network_sets, write_sampler

    print(f"loading {checkpoint} ({family}) ...", flush=True)
    if family == "acestep_v1":
        from export.acestep_v1.networks import NETWORKS as V1_NETWORKS
        from export.acestep_v1.repository import DEFAULT_VERSION_SET, load_v1, network_set, write_v1_sampler

        loaded = load_v1(checkpoint)
        export_network_sets([network_set(loaded, version)], repo=repo, work=work, target=target)  # type: ignore[arg-type]
        write_v1_sampler(
            repo=repo,
            loaded=loaded,
            version_set=version_set or DEFAULT_VERSION_SET,
            versions={name: version for name in V1_NETWORKS},
        )
        return
    from export.acestep15.checkpoint import load_pipeline, read_dims

    pipe = load_pipeline(checkpoint)
    dims = read_dims(checkpoint)
    variant = str(pipe.transformer.config.get("model_version") or ("turbo" if dims.is_turbo else "base"))
    export_network_sets([acestep15_networks(pipe, dims, version)], repo=repo, work=work, target=target)  # type: ignore[arg-type]
    write_sampler(
        repo=repo,
        pipe=pipe,
        dims=dims,
        version_set=version_set or variant,
        versions={name: version for name in NETWORKS},
        variant=variant,
    )


def export_tiny(*, repo: Path, work: Path, target: str, families: tuple[str, ...] = FAMILIES) -> None:
    """ACE-Step 1.5: version set "turbo" = every network at version 1; "sft" = the base-style DiT as ``dit`` version 2
    with the same encoders and VAE — two versions of one model, as in a real deployment that serves turbo and SFT
    weights. ACE-Step v1: version set "base", every ``v1_*`` network at version 1. All ONNX exports share one pool of
    workers (the families' small networks fill the gaps beside the large ones)."""
    from export.repository import NETWORKS, NetworkSet, acestep15_networks, export_network_sets, write_sampler

    sets: list[NetworkSet] = []
    writers: list[Callable[[], object]] = []
    if "acestep15" in families:
        from export.acestep15.checkpoint import load_pipeline, read_dims
        from export.acestep15.presets import build_tiny

        for variant, version, networks in (("turbo", 1, NETWORKS), ("sft", 2, ("dit",))):
            folder = build_tiny(work / "presets" / f"acestep15-tiny-{variant}", variant=variant)  # type: ignore[arg-type]
            pipe = load_pipeline(folder)
            dims = read_dims(folder)
            print(f"tiny {variant}: exporting {', '.join(networks)} as version {version}", flush=True)
            sets.append(acestep15_networks(pipe, dims, version, networks))
            versions = {name: 1 for name in NETWORKS} | {"dit": version}
            writers.append(
                functools.partial(
                    write_sampler,
                    repo=repo,
                    pipe=pipe,
                    dims=dims,
                    version_set=variant,
                    versions=versions,
                    variant=variant,
                )
            )
    if "acestep_v1" in families:
        from export.acestep_v1.networks import NETWORKS as V1_NETWORKS
        from export.acestep_v1.repository import (
            DEFAULT_VERSION_SET,
            load_v1,
            network_set,
            tiny_preset,
            write_v1_sampler,
        )

        loaded = load_v1(tiny_preset(work))
        print(f"tiny acestep_v1: exporting {', '.join(V1_NETWORKS)} as version 1", flush=True)
        sets.append(network_set(loaded, 1))
        writers.append(
            functools.partial(
                write_v1_sampler,
                repo=repo,
                loaded=loaded,
                version_set=DEFAULT_VERSION_SET,
                versions={name: 1 for name in V1_NETWORKS},
            )
        )
    export_network_sets(sets, repo=repo, work=work, target=target)  # type: ignore[arg-type]
    for write in writers:
        write()


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
