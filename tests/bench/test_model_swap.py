"""bench/model_swap.py rolls a second version in and back out under load on the real tritonserver, with zero
failed requests, and the traffic really moves between versions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.markers import needs_triton
from tests.orchestrator.toy_models import write_echo_repository

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.triton
@needs_triton
def test_swap_under_load_drops_nothing(tmp_path: Path) -> None:
    repo = write_echo_repository(tmp_path / "repo", versions=(1,))
    report_path = tmp_path / "report.json"
    argv = [
        sys.executable,
        str(ROOT / "bench" / "model_swap.py"),
        "--repository",
        str(repo),
        "--start-triton",
        "--clone-new",
        "--model",
        "echo",
        "--phase-s",
        "1",
        "--concurrency",
        "2",
        "--json",
        str(report_path),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (repo / "echo" / "2" / "model.py").is_file()  # --clone-new made the "new" version
    report = json.loads(report_path.read_text())
    assert report["failed"] == 0 and report["errors"] == []
    assert report["sent"] == report["ok"] > 200
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases["baseline (old)"]["by_version"]) == {"1"}
    assert set(phases["canary 50% new"]["by_version"]) == {"1", "2"}
    assert set(phases["new only"]["by_version"]) == {"2"} and phases["new only"]["ok"] > 0
    assert set(phases["old only (rolled back)"]["by_version"]) == {"1"}
    assert [a["ready"] for a in report["actions"] if "ready" in a] == [[1, 2], [2], [1, 2], [1]]
    assert report["final_versions"] == [1]
    assert "failed 0" in result.stderr
