"""Dockerfile rules, checked on BuildKit's own parse of each file (no engine needed)."""

import fnmatch
import re
import shlex
import subprocess
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


def packages(service: str) -> dict[str, str]:
    """The project packages a service's image installs: directory (with its pyproject.toml) -> the
    import package it holds."""
    return {
        "libs/generated": "llmsuite",
        "libs/common": "llmsuite_common",
        f"services/{service}": f"{service}_service",
    }


@pytest.mark.parametrize("service", SERVICES)
def test_service_images_install_the_project_packages_and_run_the_service_module(dockerfiles, service):
    instructions = dockerfiles[f"services/{service}/Dockerfile"]
    parts = stages(instructions)
    build, final = parts[0], parts[-1]
    assert final[-1]["cmd"] == "ENTRYPOINT"
    assert final[-1]["value"] == ["python", "-m", f"{service}_service"]
    for ins in instructions:
        if ins["cmd"] == "COPY" and not ins["flags"]:
            for item in ins["value"][:-1]:
                assert (ROOT / item).exists(), f"{service}: COPY {item} names nothing in the repository"

    # Each package directory is copied whole (what .dockerignore sends) and installed by pip into the
    # venv the final stage copies: no search path set by hand, no source tree in the image.
    # Dependencies are the pinned requirements, installed first with the setuptools that builds them.
    dirs = packages(service)
    copies = {
        ins["value"][0]: ins["value"][1]
        for ins in build
        if ins["cmd"] == "COPY" and not ins["flags"] and len(ins["value"]) == 2
    }
    for directory, module in dirs.items():
        assert (ROOT / directory / "pyproject.toml").is_file(), directory
        assert (ROOT / directory / module).is_dir(), f"{directory} holds no {module}"
        assert copies.get(directory) == f"/src/{directory}", f"{service}: {directory} is not copied to /src"
    runs = [(i, shlex.split(ins["value"][0])) for i, ins in enumerate(build) if ins["cmd"] == "RUN"]
    requirements = [i for i, argv in runs if argv[:2] == ["/opt/venv/bin/pip", "install"] and "-r" in argv]
    assert [argv for i, argv in runs if i in requirements] == [
        [
            "/opt/venv/bin/pip",
            "install",
            "-r",
            "/src/requirements/build.txt",
            "-r",
            f"/src/requirements/{service}.txt",
        ]
    ]
    project = [(i, argv) for i, argv in runs if argv[-1] == f"/src/services/{service}"]
    assert [argv for _, argv in project] == [
        [
            "/opt/venv/bin/pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            *(f"/src/{d}" for d in dirs),
        ]
    ]
    assert requirements[0] < project[0][0], f"{service}: the pinned dependencies come first"

    # Bytecode of the installed packages, in the venv's site-packages for the base image's Python.
    version = re.match(r"python:(\d+\.\d+)\.", build[0]["value"][0])
    assert version, f"{service}: the build stage is not on a python image"
    site = f"/opt/venv/lib/python{version[1]}/site-packages"
    compiles = [" ".join(argv) for i, argv in runs if "compileall" in argv]
    assert len(compiles) == 1, f"{service}: one compileall step"
    assert "--invalidation-mode unchecked-hash" in compiles[0]
    assert compiles[0].startswith(f"site={site} &&"), compiles[0]
    assert compiles[0].split()[-3:] == [f"$site/{m}" for m in dirs.values()], compiles[0]

    assert all(ins["flags"] for ins in final if ins["cmd"] == "COPY"), "the final stage copies from the build"
    env: dict[str, str] = {}
    for ins in final:
        if ins["cmd"] == "ENV":
            env |= dict(zip(ins["value"][::2], ins["value"][1::2], strict=True))
    assert "PYTHONPATH" not in env, f"{service}: the packages are installed, not put on a path"
    assert env["OTEL_SERVICE_NAME"] == service
    exposed = [ins["value"][0] for ins in final if ins["cmd"] == "EXPOSE"]
    assert exposed == [env["PORT"]] == [str(PORTS[service])], f"{service}: ports disagree"


def test_requirements_are_pinned_exactly():
    for path in sorted((ROOT / "requirements").glob("*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.match(r"^[A-Za-z0-9_.\[\],-]+==[\w.+-]+$", line), f"{path.name}: unpinned {line}"


def _matches(pattern: str, path: str) -> bool:
    """.dockerignore matching, segment by segment (`*` stays within one), `**` for any depth."""
    pat, parts = pattern.strip("/").split("/"), path.split("/")
    if pat[0] == "**":
        return any(_matches("/".join(pat[1:]), "/".join(parts[i:])) for i in range(len(parts)))
    return len(pat) == len(parts) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pat, strict=True))


def sent(path: str, lines: list[str]) -> bool:
    """Whether `path` is in the build context: the last pattern matching it or a folder above decides."""
    parts = path.split("/")
    keep = True
    for line in lines:
        if line and not line.startswith("#"):
            pattern = line.removeprefix("!")
            if any(_matches(pattern, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                keep = line.startswith("!")
    return keep


def test_dockerignore_sends_only_what_images_copy():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*")] == "*", "start from nothing, then allow"
    assert "**/__pycache__" in lines
    tracked = subprocess.run(
        ["git", "ls-files", "libs", "services"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for service in SERVICES:
        for directory, module in packages(service).items():
            assert sent(f"{directory}/pyproject.toml", lines), f"{directory}/pyproject.toml is not sent"
            code = [p for p in tracked if p.startswith(f"{directory}/{module}/")]
            assert code and all(sent(p, lines) for p in code), f"{directory}/{module} is not sent whole"
    assert not any(sent(p, lines) for p in tracked if "/tests/" in p), "tests are not sent"
    assert not sent("libs/common/llmsuite_common/__pycache__/x.pyc", lines)
