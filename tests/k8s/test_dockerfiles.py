"""Dockerfile rules, checked on BuildKit's own parse of each file (no engine needed).

services/Dockerfile holds the four service images (a shared build stage chosen by the SERVICE
build argument, a final stage per service chosen by --target); k8s/images/model-server/Dockerfile
the inference server. Each image is checked as its build resolves it: the target's chain of
stages, the build arguments' values substituted."""

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from k8s_objects import SERVICES

ROOT = Path(__file__).resolve().parents[2]
SERVICE_DOCKERFILE = "services/Dockerfile"
MODEL_SERVER_DOCKERFILE = "k8s/images/model-server/Dockerfile"
# The official image by tag and by the digest of its multi-architecture index.
PINNED_BASE = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*@sha256:[a-f0-9]{64}$")
PORTS = {"gateway": 8080, "guardrails": 50061, "retrieval": 50062, "generation": 50063}
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|cmake|make|clang|git)\b")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class Stage:
    def __init__(self, index: int, instructions: list[dict[str, Any]], args: dict[str, str]) -> None:
        head = instructions[0]["value"]
        self.index = index
        self.base = substitute(head[0], args)
        self.name = head[2] if len(head) == 3 and head[1].upper() == "AS" else str(index)
        self.instructions = instructions


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def global_args(instructions: list[dict[str, Any]]) -> dict[str, str]:
    """ARGs before the first FROM, with their defaults (what FROM lines may use)."""
    found: dict[str, str] = {}
    for ins in instructions:
        if ins["cmd"] == "FROM":
            break
        if ins["cmd"] == "ARG":
            name, _, default = ins["value"][0].partition("=")
            found[name] = default
    return found


def stages(instructions: list[dict[str, Any]], build_args: dict[str, str] | None = None) -> list[Stage]:
    args = global_args(instructions) | (build_args or {})
    out: list[list[dict[str, Any]]] = []
    for ins in instructions:
        if ins["cmd"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return [Stage(i, part, args) for i, part in enumerate(out)]


def resolved(stage_instructions: list[dict[str, Any]], args: dict[str, str]) -> list[dict[str, Any]]:
    """A stage's instructions with its ARG defaults and the build arguments substituted."""
    scope = dict(args)
    out = []
    for ins in stage_instructions:
        if ins["cmd"] == "ARG":
            name, _, default = ins["value"][0].partition("=")
            scope.setdefault(name, default)
        out.append(ins | {"value": [substitute(v, scope) for v in ins["value"]]})
    return out


def image(
    instructions: list[dict[str, Any]], target: str | None, build_args: dict[str, str]
) -> dict[str, Any]:
    """What a build of `target` (the last stage when None) makes: the stages it uses, the chain of
    stages the final image is built on (base first), and every base image it pulls."""
    args = global_args(instructions) | build_args
    parts = stages(instructions, build_args)
    named = {s.name: s for s in parts}
    final = named[target] if target else parts[-1]
    chain = [final]
    while chain[0].base in named:
        chain.insert(0, named[chain[0].base])
    used, todo = {}, [s for s in chain]
    while todo:
        stage = todo.pop()
        used[stage.name] = stage
        for ins in stage.instructions:
            sources = [f.split("=", 1)[1] for f in ins["flags"] if f.startswith("--from=")]
            sources += [
                part.split("=", 1)[1]
                for f in ins["flags"]
                if f.startswith("--mount=")
                for part in f.removeprefix("--mount=").split(",")
                if part.startswith("from=")
            ]
            todo += [named[s] for s in sources if s in named and s not in used]
        if stage.base in named and stage.base not in used:
            todo.append(named[stage.base])
    return {
        "chain": [resolved(s.instructions, args) for s in chain],
        "final": [ins for s in chain for ins in resolved(s.instructions, args)],
        "stages": {name: resolved(s.instructions, args) for name, s in used.items()},
        "bases": sorted({s.base for s in used.values() if s.base not in named}),
    }


IMAGES = {
    **{s: (SERVICE_DOCKERFILE, s, {"SERVICE": s}) for s in SERVICES},
    "model-server": (MODEL_SERVER_DOCKERFILE, None, {}),
}


def test_one_dockerfile_for_the_services_one_for_the_model_server(dockerfiles):
    assert set(dockerfiles) == {SERVICE_DOCKERFILE, MODEL_SERVER_DOCKERFILE}
    names = {s.name for s in stages(dockerfiles[SERVICE_DOCKERFILE])}
    assert set(SERVICES) <= names, "a final stage (build target) per service"


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_rules(dockerfiles, name):
    path, target, args = IMAGES[name]
    built = image(dockerfiles[path], target, args)
    for base in built["bases"]:
        assert base == "scratch" or PINNED_BASE.match(base), (
            f"{name}: base image {base} is not pinned by digest"
        )
        assert base == "scratch" or "slim" in base or "distroless" in base, f"{name}: base {base} is not slim"
    python_bases = [b for b in built["bases"] if b != "scratch"]
    assert len(python_bases) == 1, f"{name}: every stage on the one PYTHON_IMAGE build argument"
    assert global_args(dockerfiles[path]).get("PYTHON_IMAGE") == python_bases[0], name
    assert len(built["stages"]) >= 2, f"{name}: not multi-stage"
    final = built["final"]
    commands = [ins["cmd"] for ins in dockerfiles[path]]
    assert "HEALTHCHECK" not in commands, f"{name}: Kubernetes probes do health checks"
    users = [ins["value"][0] for ins in final if ins["cmd"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, f"{name}: final stage runs as root"
    assert users[-1].split(":")[0].isdigit(), f"{name}: USER must be numeric so runAsNonRoot can verify it"
    final_runs = " ".join(" ".join(ins["value"]) for ins in final if ins["cmd"] == "RUN")
    assert not BUILD_TOOLS.search(final_runs), f"{name}: build tools installed in the final stage"
    assert "pip install" not in final_runs, f"{name}: dependencies belong in the build stage"
    assert any(ins["cmd"] == "COPY" and any(f.startswith("--from=") for f in ins["flags"]) for ins in final)
    entrypoint = [ins for ins in final if ins["cmd"] == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1]["json"], (
        f"{name}: ENTRYPOINT must be exec form so SIGTERM reaches Python"
    )


@pytest.mark.parametrize("path", [SERVICE_DOCKERFILE, MODEL_SERVER_DOCKERFILE])
def test_local_wheels_are_an_optional_build_context(dockerfiles, path):
    """`FROM scratch AS wheels` is empty unless --build-context wheels=DIR replaces it; pip reads it
    from a bind mount, so no wheel is left in a layer."""
    parts = stages(dockerfiles[path])
    wheels = [s for s in parts if s.name == "wheels"]
    assert wheels and wheels[0].base == "scratch" and len(wheels[0].instructions) == 1, path
    for ins in dockerfiles[path]:
        mounts = [f for f in ins["flags"] if f.startswith("--mount=")]
        for mount in mounts:
            assert mount == "--mount=type=bind,from=wheels,target=/wheels", mount
        if ins["cmd"] == "RUN" and "pip install" in ins["value"][0] and "--no-deps" not in ins["value"][0]:
            assert mounts and "--find-links /wheels" in ins["value"][0], f"{path}: {ins['value'][0]}"


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
    built = image(dockerfiles[SERVICE_DOCKERFILE], service, {"SERVICE": service})
    build, final = built["stages"]["build"], built["final"]
    assert final[-1]["cmd"] == "ENTRYPOINT"
    assert final[-1]["value"] == ["python", "-m", f"{service}_service"]
    for stage in built["stages"].values():
        for ins in stage:
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
            "--find-links",
            "/wheels",
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

    # Bytecode of the installed packages, in the venv's site-packages for the base image's Python;
    # then the venv is put under the service's name, which only the matching target copies.
    (python_base,) = [b for b in built["bases"] if b != "scratch"]
    version = re.match(r"python:(\d+\.\d+)\.", python_base)
    assert version, f"{service}: the build stage is not on a python image"
    site = f"/opt/venv/lib/python{version[1]}/site-packages"
    compiles = [" ".join(argv) for i, argv in runs if "compileall" in argv]
    assert len(compiles) == 1, f"{service}: one compileall step"
    assert "--invalidation-mode unchecked-hash" in compiles[0]
    assert compiles[0].startswith(f"site={site} &&"), compiles[0]
    assert compiles[0].split("&&")[1].split()[-3:] == [f"$site/{m}" for m in dirs.values()], compiles[0]
    assert compiles[0].endswith(f"&& mkdir /venvs && mv /opt/venv /venvs/{service}"), compiles[0]
    venv_copies = [ins for ins in final if ins["cmd"] == "COPY"]
    assert [(i["flags"], i["value"]) for i in venv_copies] == [
        (["--from=build"], [f"/venvs/{service}", "/opt/venv"])
    ]
    others = [s for s in SERVICES if s != service]
    wrong = image(dockerfiles[SERVICE_DOCKERFILE], service, {"SERVICE": others[0]})
    wrong_copy = [i["value"][0] for i in wrong["final"] if i["cmd"] == "COPY"]
    assert wrong_copy == [f"/venvs/{service}"], "a target of another service finds no venv to copy"

    assert all(ins["flags"] for ins in final if ins["cmd"] == "COPY"), "the final stage copies from the build"
    env: dict[str, str] = {}
    for ins in final:
        if ins["cmd"] == "ENV":
            env |= dict(zip(ins["value"][::2], ins["value"][1::2], strict=True))
    assert "PYTHONPATH" not in env, f"{service}: the packages are installed, not put on a path"
    assert env["OTEL_SERVICE_NAME"] == service
    exposed = [ins["value"][0] for ins in final if ins["cmd"] == "EXPOSE"]
    assert exposed == [env["PORT"]] == [str(PORTS[service])], f"{service}: ports disagree"


def test_torch_is_the_cpu_build(dockerfiles):
    """A service whose requirements pin torch (retrieval) installs it before its requirements, from
    the CPU index, or (TORCH_INDEX_URL empty) the wheel alone from the wheels context, its
    dependencies then coming with the requirements. The CPU build (X+cpu) satisfies the torch==X
    pin, so PyPI's default build, with its CUDA libraries, is never asked for."""
    pinned = [
        s for s in SERVICES if re.search(r"^torch==", (ROOT / f"requirements/{s}.txt").read_text(), re.M)
    ]
    assert pinned == ["retrieval"]
    build = image(dockerfiles[SERVICE_DOCKERFILE], "retrieval", {"SERVICE": "retrieval"})["stages"]["build"]
    args = {
        i["value"][0].partition("=")[0]: i["value"][0].partition("=")[2] for i in build if i["cmd"] == "ARG"
    }
    assert args["TORCH_INDEX_URL"] == TORCH_CPU_INDEX
    runs = [ins["value"][0] for ins in build if ins["cmd"] == "RUN"]
    torch = [i for i, r in enumerate(runs) if "torch==" in r]
    requirements = [i for i, r in enumerate(runs) if "-r /src/requirements/retrieval.txt" in r]
    assert len(torch) == 1 and torch[0] < requirements[0]
    step = runs[torch[0]]
    assert f'from="--index-url {TORCH_CPU_INDEX}"' in step and 'from="--no-index --no-deps"' in step, step
    assert "/src/requirements/retrieval.txt" in step, "the pin comes from the requirements file"


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
    assert not any(sent(p, lines) for p in tracked if p.endswith("README.md")), "documents are not sent"
    assert not sent("libs/common/llmsuite_common/__pycache__/x.pyc", lines)
