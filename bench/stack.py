"""What the benchmark scripts share: a tiny repository (exported once into build/bench-repository) and a way to run
songs against a server. Run benches from the repository root: ``.venv/bin/python -m bench.<name>``."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

from export.cli import tiny_export_argv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "build" / "bench-repository"


def tiny_repository(path: Path = DEFAULT_REPOSITORY, *, skip_llm: bool = True) -> Path:
    """Export the tiny preset once (re-runs skip finished artifacts)."""
    cmd = tiny_export_argv(path, skip_llm=skip_llm)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    load = os.getloadavg()[0]
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load avg {load:.1f}"


def dit_counts(server, version: str = "1") -> tuple[int, int]:
    stats = server.model_statistics("dit", version)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def reload_dit(server, **changes) -> None:
    """Reload ``dit`` with a config override (repository API), e.g. ``dynamic_batching=None`` or a new delay."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    config = client.get_model_config("dit")
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    server.load("dit", config=json.dumps(config))
