"""docker-compose.yml is for users (no Docker engine here): parse it and check images, ports, volumes, env wiring."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import REPO
from zones.config import load


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_images_are_pinned_and_ports_volumes_declared() -> None:
    c = _compose()
    services = c["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "datazones"}
    for name, s in services.items():
        if "image" in s:
            assert re.match(r"^[\w./-]+:[\w.-]+$", s["image"]) and not s["image"].endswith(":latest"), name
    assert services["datazones"]["build"] == "." and (REPO / "Dockerfile").is_file()
    assert "5432:5432" in services["postgres"]["ports"] and "9000:9000" in services["minio"]["ports"]
    named = set(c["volumes"])
    for s in services.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            assert src.startswith("./") or src in named, f"volume {src} is not declared"


def test_env_wiring_reaches_real_services_and_secrets_are_required() -> None:
    services = _compose()["services"]
    env = services["datazones"]["environment"]
    pg = services["postgres"]["environment"]
    url = env["DATAZONES__HOT__URL"]
    assert url.startswith(f"postgresql+psycopg://{pg['POSTGRES_USER']}:") and url.endswith(
        f"@postgres:5432/{pg['POSTGRES_DB']}")
    assert env["DATAZONES__WARM__STORAGE_OPTIONS__AWS_ENDPOINT_URL"] == "http://minio:9000"
    init = services["minio-init"]["entrypoint"]
    for zone in ("warm", "cold"):
        bucket = env[f"DATAZONES__{zone.upper()}__URI"].removeprefix("s3://")
        assert f"dz/{bucket}" in init
    assert "--with-lock dz/cold" in init  # the archive bucket has object lock
    for secret in ("DATAZONES_PSEUDONYM_KEY", "DATAZONES_SEAL_KEY", "AWS_SECRET_ACCESS_KEY"):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", env[secret]), f"{secret} must be required from the environment"
    assert "${POSTGRES_PASSWORD:?" in pg["POSTGRES_PASSWORD"]


def test_the_compose_environment_loads_as_a_valid_config() -> None:
    env = {k: re.sub(r"\$\{[A-Z_]+:\?[^}]+\}", "x", str(v))
           for k, v in _compose()["services"]["datazones"]["environment"].items()}
    project = load(REPO / "zones.yaml", env=env)
    assert project.hot_url.startswith("postgresql+psycopg://datazones:x@postgres")
    assert project.zone_uri("warm") == "s3://warm" and project.zone_uri("cold") == "s3://cold"
    assert project.storage_options("warm") == {"aws_endpoint_url": "http://minio:9000", "aws_allow_http": "true",
                                               "aws_region": "us-east-1", "aws_conditional_put": "etag"}


def test_dockerfile_copies_everything_the_wheel_build_reads() -> None:
    """The image builds the wheel: every package, the build hook (C kernel) and force-included data must be there."""
    import tomllib

    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {*wheel["packages"], wheel["hooks"]["custom"]["path"], *wheel.get("force-include", {})}
    copied: set[str] = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            copied.update(parts[1:-1])
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    assert "gcc" in (REPO / "Dockerfile").read_text()  # the kernel needs a compiler in the build stage
