"""The project's packages (libs/*, services/*, each with a pyproject.toml): make install installs every
one editable into the venv, each declares what its code imports, and each builds a wheel with all of
its files (the images install them so: services/Dockerfile)."""

import ast
import functools
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from tests.distributions import module_owners, norm

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*pathspecs: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", *pathspecs], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [p for p in listed.stdout.split() if (ROOT / p).exists()]


_norm = norm


# Directory -> its pyproject.toml, for every project package.
PROJECTS = {
    str(Path(p).parent): tomllib.loads((ROOT / p).read_text())
    for p in _tracked("libs/*/pyproject.toml", "services/*/pyproject.toml")
}


def _import_package(directory: str) -> str:
    """The one import package a project holds (`[tool.setuptools.packages.find] include`)."""
    (pattern,) = PROJECTS[directory]["tool"]["setuptools"]["packages"]["find"]["include"]
    return pattern.removesuffix("*")


def _declared(directory: str) -> set[str]:
    project = PROJECTS[directory]["project"]
    requirements = [*project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}


def test_every_project_is_a_package_make_install_installs():
    assert {"libs/generated", "libs/common", "libs/testkit"} <= set(PROJECTS)
    assert {f"services/{s}" for s in ("gateway", "guardrails", "retrieval", "generation")} <= set(PROJECTS)
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^PACKAGES := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert listed, "the Makefile lists its packages in PACKAGES"
    assert sorted(listed[1].replace("\\\n", " ").split()) == sorted(PROJECTS)
    for directory, config in PROJECTS.items():
        # A static .pth path entry, which mypy and every subprocess follow (not an import hook).
        assert config["tool"]["setuptools"]["package-dir"] == {"": "."}, directory
        assert (ROOT / directory / _import_package(directory)).is_dir(), directory


def test_the_venv_runs_this_checkout_without_a_search_path_set_by_hand(tmp_path):
    """From anywhere, with no PYTHONPATH: the installed packages are this checkout's files."""
    modules = {d: _import_package(d) for d in PROJECTS}
    script = (
        "import importlib, json, sys\n"
        "print(json.dumps({m: list(importlib.import_module(m).__path__) for m in sys.argv[1:]}))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script, *modules.values()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    paths = json.loads(done.stdout)
    for directory, module in modules.items():
        assert paths[module] == [str(ROOT / directory / module)], module
        dist = importlib.metadata.distribution(PROJECTS[directory]["project"]["name"])
        direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
        assert direct_url.get("dir_info", {}).get("editable"), f"{directory} is not installed editable"
        assert direct_url["url"] == (ROOT / directory).as_uri(), f"{directory} is installed from elsewhere"


@functools.cache
def _owners() -> dict[str, set[str]]:
    """Module name -> the installed distributions whose files provide it."""
    owners: dict[str, set[str]] = defaultdict(set, {m: set(n) for m, n in module_owners().items()})
    # The project's own packages are editable: their files are not listed, their top level is.
    for module, names in importlib.metadata.packages_distributions().items():
        if any(_norm(n).startswith("llmsuite-") for n in names):
            owners[module] |= {_norm(n) for n in names}
    return owners


def _imports(directory: str) -> set[str]:
    modules: set[str] = set()
    for path in _tracked(f"{directory}/{_import_package(directory)}/*.py"):
        for node in ast.walk(ast.parse((ROOT / path).read_text(), filename=path)):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # A name may be a submodule (`from opentelemetry import trace`); the lookup falls back
                # to the module when it is not.
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    own = _import_package(directory)
    return {
        m
        for m in modules
        if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in (own, "__future__")
    }


@pytest.mark.parametrize("directory", sorted(PROJECTS))
def test_each_package_declares_what_its_code_imports(directory):
    """Names, not versions: requirements/*.txt pin the versions the venv and the images install."""
    declared = _declared(directory)
    owners = _owners()
    missing = []
    for module in sorted(_imports(directory)):
        parts = module.split(".")
        prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
        provider = next((owners[p] for p in prefixes if p in owners), set())
        if not provider & declared:
            missing.append(f"{module} ({', '.join(sorted(provider)) or 'nothing installed provides it'})")
    assert not missing, f"{directory}/pyproject.toml does not declare: {missing}"
    not_installed = sorted(n for n in declared if not any(n in o for o in owners.values()))
    assert not not_installed, f"{directory} declares what the venv lacks: {not_installed}"


@pytest.mark.parametrize("directory", sorted(PROJECTS))
def test_each_package_builds_a_wheel_with_every_file_of_its_package(directory, tmp_path):
    """As the images install them: from the tracked files alone, not editable. Data files (the
    gateway's migrations, retrieval's evaluation set, the stubs' .pyi) must be declared to ship."""
    source = tmp_path / "src"
    package = _import_package(directory)
    files = _tracked(f"{directory}/pyproject.toml", f"{directory}/{package}")
    for path in files:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out]
        + [source / directory],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.split("/")[0] == package}
    expected = {p.removeprefix(f"{directory}/") for p in files if p != f"{directory}/pyproject.toml"}
    assert shipped == expected
