"""Read docker-compose.yml the way `docker compose` does (variable interpolation, YAML merge keys,
image ENV under the service environment) and turn a service into a local command line: the
hostnames of compose services become 127.0.0.1, named volumes become folders, container ports
become free local ports. No Docker engine needed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import yaml

from tests.deploy.helpers import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR` and `$$` substitution."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, default = m.group(3), m.group(4) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _VAR.sub(sub, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model after interpolation; `env` stands for the shell environment (default: empty,
    so the file's own defaults are what is checked)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())  # SafeLoader resolves `<<:` merge keys
    return interpolate(raw, env or {})


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def dockerfile_env(dockerfile: Path, target: str | None) -> dict[str, str]:
    """ENV of the build target's stage (the image's environment)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    stages: list[tuple[str | None, list[str]]] = []
    for line in text.splitlines():
        match = re.match(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            stages.append((match.group(1), []))
        elif stages:
            stages[-1][1].append(line)
    lines = next(body for name, body in stages if name == target) if target else stages[-1][1]
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("ENV "):
            for token in shlex.split(line[4:]):
                key, _, value = token.partition("=")
                env[key] = value
    return env


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    volumes: dict[str, Path] = field(default_factory=dict)  # container path -> local folder


def localize(
    compose: dict[str, Any],
    name: str,
    *,
    redis_url: str,
    volume_root: Path,
    ports: dict[int, int],
) -> LocalService:
    """The service `name` as a local process: service hostnames -> 127.0.0.1, the `redis` service ->
    `redis_url` (host, port and DB of the test Redis), named volumes -> folders under `volume_root`
    (shared between services, like Docker volumes), container ports -> `ports`."""
    services = compose["services"]
    service = services[name]
    build = service.get("build") or {}
    env = dockerfile_env(REPO / build["dockerfile"], build.get("target")) if build else {}
    env.update(service_environment(service))

    volumes: dict[str, Path] = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        assert not source.startswith((".", "/")), f"{name}: bind mount {source} in an app service"
        assert source in compose["volumes"], f"{name}: volume {source} not declared"
        volumes[target] = volume_root / source
        volumes[target].mkdir(parents=True, exist_ok=True)

    test_redis = urlparse(redis_url)
    local_env: dict[str, str] = {}
    for key, value in env.items():
        for container_path, folder in volumes.items():
            if value == container_path or value.startswith(container_path + "/"):
                value = str(folder) + value[len(container_path) :]
        if re.match(r"^[a-z][a-z0-9+.-]*://", value):
            url = urlparse(value)
            if url.hostname == "redis":
                value = urlunparse(url._replace(netloc=test_redis.netloc, path=test_redis.path or "/0"))
            elif url.hostname in services:
                port = ports.get(url.port, url.port) if url.port else None
                value = urlunparse(url._replace(netloc=f"127.0.0.1:{port}" if port else "127.0.0.1"))
        for container_port, local_port in ports.items():
            if value == str(container_port):
                value = str(local_port)
        local_env[key] = value

    argv = list(service["command"])
    for i, token in enumerate(argv[:-1]):
        if token == "--port":
            argv[i + 1] = str(ports[int(argv[i + 1])])
    return LocalService(name, argv, local_env, dict(ports), volumes)
