"""docker/: the Compose file validates and has what a GPU deployment needs; the images' package lists cover the code.

No image is built here (no GPU, no registry access): `docker compose config` validates the file, the YAML and the
Dockerfiles are checked structurally, and the images' requirement lists are checked against the imports of the code
each image runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose` (Debian's package), whichever works."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return cmd
    return None


# The secrets compose.yaml requires (no defaults), with test values.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-test-pw",
    "TRITONE_JWT_SECRET": "jwt-test-secret",
    "TRITON_ADMIN_KEY": "admin-test-key",
    "TRITONE_METRICS_TOKEN": "metrics-test-token",
}
RESTRICTED = "model-repository,model-config,shared-memory,trace,logging"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRITONE_", "POSTGRES_", "TRITON_"))}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` against ``env`` (a missing required one fails)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"{name} is required: {arg}")

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = service["deploy"]["resources"]["reservations"]["devices"]
    return devices


# --------------------------------------------------------------------------------------------------------------------
# compose.yaml
# --------------------------------------------------------------------------------------------------------------------


def test_compose_config_validates() -> None:
    cmd = _compose_command()
    if cmd is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)"
        )
    argv = [*cmd, "-f", str(COMPOSE), "--profile", "scale", "config"]
    # No secret has a default: without them the file does not even resolve, and the error names the variable.
    bare = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=_clean_env(), timeout=120)
    assert bare.returncode != 0 and "set " in bare.stderr + bare.stdout, bare.stderr
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**_clean_env(), **SECRETS}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert {"postgres", "triton", "triton-2", "orchestrator"} <= set(resolved["services"])
    orchestrator_env = resolved["services"]["orchestrator"]["environment"]
    # Interpolated values, in the form the orchestrator's settings parse (lists as JSON).
    assert json.loads(orchestrator_env["TRITONE_TRITON_URLS"]) == ["triton:8001"]
    assert orchestrator_env["TRITONE_DATABASE_URL"] == "postgresql+asyncpg://tritone:pg-test-pw@postgres:5432/tritone"
    assert orchestrator_env["TRITONE_TRITON_RESTRICTED_KEY"] == "tritone-admin=admin-test-key"
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-test-pw"
    published = {name for name, service in resolved["services"].items() if service.get("ports")}
    assert published == {"orchestrator"}, f"only the orchestrator may publish ports, not {published - {'orchestrator'}}"
    assert f"--grpc-restricted-protocol={RESTRICTED}:tritone-admin=admin-test-key" in resolved["services"]["triton"][
        "command"
    ]
    assert _gpu_devices(resolved["services"]["triton"])[0]["device_ids"] == ["0"]
    assert _gpu_devices(resolved["services"]["triton-2"])[0]["device_ids"] == ["1"]


def test_orchestrator_settings_accept_the_compose_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.settings import Settings

    env = compose["services"]["orchestrator"]["environment"]
    for key, value in env.items():
        value = _interpolate(str(value), SECRETS)
        assert "${" not in value, f"{key}={value}: a variable this test does not resolve"
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.triton_urls == ["triton:8001"]
    assert settings.database_url == "postgresql+asyncpg://tritone:pg-test-pw@postgres:5432/tritone"
    assert settings.data_dir == Path("/data")
    assert settings.jwt_secret == "jwt-test-secret" and settings.metrics_token == "metrics-test-token"
    assert settings.triton_restricted_key == "tritone-admin=admin-test-key"
    assert settings.shutdown_grace_s == 10.0


def test_triton_service_reserves_a_gpu_and_is_health_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("triton", "triton-2"):
        triton = services[name]
        devices = _gpu_devices(triton)
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
        assert "/v2/health/ready" in _healthcheck_text(triton)
        assert "models:/models" in triton["volumes"]
        assert triton["shm_size"], "the Python backend needs more /dev/shm than Docker's 64 MB default"
        assert (
            "--model-control-mode=explicit" in triton["command"] and "--model-repository=/models" in triton["command"]
        )
        # Locked down: nothing published, the internal network only, the admin APIs behind the admin header.
        assert "ports" not in triton and triton["networks"] == ["internal"]
        for option in ("--grpc-restricted-protocol", "--http-restricted-api"):
            flag = next(arg for arg in triton["command"] if arg.startswith(option + "="))
            apis, _, header = flag.split("=", 1)[1].partition(":")
            assert {"model-repository", "model-config"} <= set(apis.split(",")), flag
            assert header.startswith("tritone-admin=${TRITON_ADMIN_KEY:?"), "the admin key must have no default"
    assert services["triton-2"]["profiles"] == ["scale"]
    assert "profiles" not in services["triton"]


def test_postgres_and_orchestrator_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres, orchestrator = services["postgres"], services["orchestrator"]
    assert "pg_isready" in _healthcheck_text(postgres)
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert orchestrator["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "triton": {"condition": "service_healthy"},
    }
    assert "/health" in _healthcheck_text(orchestrator)
    assert "data:/data" in orchestrator["volumes"]
    env = orchestrator["environment"]
    assert (
        env["TRITONE_DATABASE_URL"].startswith("postgresql+asyncpg://")
        and "@postgres:5432/" in env["TRITONE_DATABASE_URL"]
    )
    assert "triton:8001" in env["TRITONE_TRITON_URLS"]
    assert set(compose["volumes"]) == {"pgdata", "models", "data"}
    assert postgres["networks"] == ["internal"] and "ports" not in postgres
    assert set(orchestrator["networks"]) == {"internal", "edge"} and orchestrator["ports"] == ["8080:8080"]
    assert compose["networks"]["internal"] == {"internal": True}
    # Secrets: required (`:?`), never defaulted (`:-`).
    secrets = ("POSTGRES_PASSWORD", "TRITONE_JWT_SECRET", "TRITON_ADMIN_KEY", "TRITONE_METRICS_TOKEN")
    text = COMPOSE.read_text()
    for name in secrets:
        assert f"${{{name}:?" in text and f"${{{name}:-" not in text and f"${{{name}}}" not in text, name
    for name, service in services.items():
        assert "healthcheck" in service, f"service {name} has no healthcheck"


# --------------------------------------------------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["triton.Dockerfile", "orchestrator.Dockerfile"])
def test_dockerfile_copies_exist_and_pass_the_dockerignore(name: str) -> None:
    dockerfile = DOCKER / name
    ignore = [line for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*"
    kept = [p.lstrip("!").rstrip("/") for p in ignore[1:] if p.startswith("!")]
    copies = [args.split() for word, args in _instructions(dockerfile) if word == "COPY"]
    assert copies
    for args in copies:
        for src in (a for a in args[:-1] if not a.startswith("--")):
            assert (ROOT / src).exists(), f"{name}: COPY source {src} does not exist"
            assert any(Path(src).match(k) or src == k or src.startswith(k + "/") for k in kept), (
                f"{name}: COPY source {src} is excluded by {name}.dockerignore"
            )


def test_triton_dockerfile() -> None:
    ins = _instructions(DOCKER / "triton.Dockerfile")
    args = {a.split("=")[0]: a.split("=", 1)[1] for w, a in ins if w == "ARG" and "=" in a}
    assert args["TRITON_IMAGE"] == "nvcr.io/nvidia/tritonserver" and re.fullmatch(r"\d\d\.\d\d-py3", args["TRITON_TAG"])
    assert ("FROM", "${TRITON_IMAGE}:${TRITON_TAG}") in ins
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and "--index-url" in runs
    assert "-r /tmp/requirements-triton.txt" in runs and "pip install --no-deps ." in runs
    cmd = json.loads(next(a for w, a in ins if w == "CMD"))
    assert cmd == ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", "--load-model=*"]


def test_orchestrator_dockerfile() -> None:
    ins = _instructions(DOCKER / "orchestrator.Dockerfile")
    assert next(a for w, a in ins if w == "ARG").startswith("PYTHON_IMAGE=python:3.11-slim")
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert "-r /tmp/requirements-orchestrator.txt" in runs and "pip install --no-deps ." in runs
    cmd = json.loads(next(a for w, a in ins if w == "CMD"))
    assert cmd[:3] == ["uvicorn", "--factory", "orchestrator.app:create_app"]


# --------------------------------------------------------------------------------------------------------------------
# The images' package lists against the code they run
# --------------------------------------------------------------------------------------------------------------------

FIRST_PARTY = {"export", "model_repository", "orchestrator", "tests"}
# Modules an image gets other than from its requirements file.
PROVIDED = {
    "triton": {
        "torch": "installed from the CUDA-matched wheel index in triton.Dockerfile",
        "tensorrt": "installed at the server's TensorRT version in triton.Dockerfile",
        "triton_python_backend_utils": "part of Triton's Python backend",
    },
    "orchestrator": {},
}
SOURCES = {"triton": ["export", "model_repository"], "orchestrator": ["orchestrator"]}


def _requirements(image: str) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for line in (DOCKER / f"requirements-{image}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def _pyproject_requirements() -> dict[str, Requirement]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in deps}


def _required_imports(folders: list[str]) -> dict[str, str]:
    """Top-level third-party module -> a file importing it. Imports inside ``try`` blocks whose handlers fall back
    (do not raise) and inside ``if TYPE_CHECKING`` blocks are not requirements."""
    found: dict[str, str] = {}

    def visit(node: ast.AST, path: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Try) and not any(
                isinstance(n, ast.Raise) for h in child.handlers for n in ast.walk(h)
            ):
                continue  # an optional import with a fallback (a handler that re-raises makes it required)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse, path)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
            visit(child, path)

    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            visit(ast.parse(path.read_text(), filename=str(path)), path)
    return found


def _closure(requirements: dict[str, Requirement]) -> set[str]:
    """The listed distributions plus everything they pull in (per this environment's installed metadata)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = [(name, set(req.extras)) for name, req in requirements.items()]
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = requires(name) or []
        except PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append((canonicalize_name(dep.name), set(dep.extras)))
    return seen


@pytest.mark.parametrize("image", ["triton", "orchestrator"])
def test_image_requirements_cover_the_code(image: str) -> None:
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    installed = _closure(_requirements(image))
    missing = []
    for module, where in sorted(_required_imports(SOURCES[image]).items()):
        if module in PROVIDED[image]:
            continue
        names = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not names & installed:
            missing.append(f"{module} (imported by {where}; distribution {'/'.join(sorted(names))})")
    assert not missing, f"add to docker/requirements-{image}.txt: " + "; ".join(missing)


@pytest.mark.parametrize("image", ["triton", "orchestrator"])
def test_image_requirements_pin_like_pyproject(image: str) -> None:
    project = _pyproject_requirements()
    for name, req in _requirements(image).items():
        if name in project:
            assert req.specifier == project[name].specifier, (
                f"docker/requirements-{image}.txt has {req}, pyproject.toml has {project[name]}"
            )
    assert not {"torch", "nvidia-pytriton"} & set(_requirements(image)), "torch/pytriton come from elsewhere"
    assert str(_requirements(image)["numpy"].specifier) == "<2"
