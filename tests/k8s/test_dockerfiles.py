"""Dockerfile rules, checked on BuildKit's own parse of each file (no engine needed)."""

import re
from pathlib import Path
from typing import Any

import pytest
from k8s_objects import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PINNED_BASE = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*(@sha256:[a-f0-9]{64})?$")
PORTS = {"gateway": 8080, "guardrails": 50061, "retrieval": 50062, "generation": 50063}
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|cmake|make|clang|git)\b")


def stages(instructions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for ins in instructions:
        if ins["cmd"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_one_dockerfile_per_service_plus_the_model_server(dockerfiles):
    expected = {f"services/{s}/Dockerfile" for s in SERVICES} | {"k8s/images/model-server/Dockerfile"}
    assert set(dockerfiles) == expected


@pytest.mark.parametrize(
    "path", [*(f"services/{s}/Dockerfile" for s in SERVICES), "k8s/images/model-server/Dockerfile"]
)
def test_dockerfile_rules(dockerfiles, path):
    instructions = dockerfiles[path]
    parts = stages(instructions)
    assert len(parts) >= 2, f"{path}: not multi-stage"
    for stage in parts:
        base = stage[0]["value"][0]
        assert PINNED_BASE.match(base), f"{path}: base image {base} is not pinned to a version"
        assert "slim" in base or "distroless" in base, f"{path}: base {base} is not slim"
    final = parts[-1]
    commands = [ins["cmd"] for ins in instructions]
    assert "HEALTHCHECK" not in commands, f"{path}: Kubernetes probes do health checks"
    users = [ins["value"][0] for ins in final if ins["cmd"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, f"{path}: final stage runs as root"
    assert users[-1].split(":")[0].isdigit(), f"{path}: USER must be numeric so runAsNonRoot can verify it"
    final_runs = " ".join(" ".join(ins["value"]) for ins in final if ins["cmd"] == "RUN")
    assert not BUILD_TOOLS.search(final_runs), f"{path}: build tools installed in the final stage"
    assert "pip install" not in final_runs, f"{path}: dependencies belong in the build stage"
    assert any(ins["cmd"] == "COPY" and any(f.startswith("--from=") for f in ins["flags"]) for ins in final)
    entrypoint = [ins for ins in final if ins["cmd"] == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1]["json"], (
        f"{path}: ENTRYPOINT must be exec form so SIGTERM reaches Python"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_service_images_run_the_service_module_with_shared_code_copied_from_the_repo(dockerfiles, service):
    instructions = dockerfiles[f"services/{service}/Dockerfile"]
    final = stages(instructions)[-1]
    assert final[-1]["cmd"] == "ENTRYPOINT"
    assert final[-1]["value"] == ["python", "-m", f"{service}_service"]
    copied = {ins["value"][0] for ins in instructions if ins["cmd"] == "COPY" and not ins["flags"]}
    assert {
        "libs/generated/llmsuite",
        "libs/common/llmsuite_common",
        f"services/{service}/{service}_service",
    } <= copied
    for source in copied:
        for item in source.split():
            assert (ROOT / item).exists(), f"{service}: COPY {item} names nothing in the repository"
    env: dict[str, str] = {}
    for ins in final:
        if ins["cmd"] == "ENV":
            env |= dict(zip(ins["value"][::2], ins["value"][1::2], strict=True))
    assert env["PYTHONPATH"].split(":") == [
        "/app/libs/generated",
        "/app/libs/common",
        f"/app/services/{service}",
    ]
    assert env["OTEL_SERVICE_NAME"] == service
    exposed = [ins["value"][0] for ins in final if ins["cmd"] == "EXPOSE"]
    assert exposed == [env["PORT"]] == [str(PORTS[service])], f"{service}: ports disagree"


def test_requirements_are_pinned_exactly():
    for path in sorted((ROOT / "requirements").glob("*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.match(r"^[A-Za-z0-9_.\[\],-]+==[\w.+-]+$", line), f"{path.name}: unpinned {line}"


def test_dockerignore_sends_only_what_images_copy():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*")] == "*", "start from nothing, then allow"
    assert "**/__pycache__" in lines
