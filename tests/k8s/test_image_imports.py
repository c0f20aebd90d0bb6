"""Each service image holds every module its code imports, checked without a container engine.

An image installs the pinned requirements (requirements/build.txt and requirements/<service>.txt,
with whatever pip pulls in for them), then the contracts, the shared runtime and the service with
`--no-deps` (services/Dockerfile). So a module the service's code imports is there at boot only if
one of those distributions provides it: a dependency declared in a pyproject.toml but missing from
the service's requirements file is NOT installed (--no-deps), and would fail at boot with
ModuleNotFoundError. Here the distributions an image gets are worked out from the requirements
files and the dependency metadata of the venv (`make install` installed the same pins), and every
import of the installed packages, function-level ones included, is looked up among them.
"""

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from k8s_objects import SERVICES
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.distributions import module_owners, norm

ROOT = Path(__file__).resolve().parents[2]
# The interpreter of the images (python:3.11 on Linux), for dependency markers.
IMAGE_ENV: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
}
# Imports an image may lack on purpose, with the reason; each must sit inside a function (imported
# only on the path that needs it), which the test checks.
OPTIONAL = {
    "pgserver": "the embedded PostgreSQL of local runs and tests (no DSN set); images connect by DSN",
}


_norm = norm


def project_packages(service: str) -> dict[str, str]:
    """Directory -> import package, for what the image installs with --no-deps."""
    return {
        "libs/generated": "llmsuite",
        "libs/common": "llmsuite_common",
        f"services/{service}": f"{service}_service",
    }


def _requirements(path: Path) -> list[Requirement]:
    found: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            found += _requirements(path.parent / line[2:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def installed_by_pip(service: str) -> set[str]:
    """Distribution names pip installs for the image: the pinned requirements and, through the
    venv's metadata of the same versions, everything they require (extras and markers honoured)."""
    seen: set[str] = set()
    pending = [
        (r, frozenset(r.extras))
        for r in _requirements(ROOT / "requirements/build.txt")
        + _requirements(ROOT / f"requirements/{service}.txt")
    ]
    done: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extras = pending.pop()
        name = _norm(requirement.name)
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{service}: {name} is required but not in the venv; run make install")
        for spec in dist.requires or []:
            dep = Requirement(spec)
            wanted = [IMAGE_ENV | {"extra": e} for e in extras] or [IMAGE_ENV | {"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in wanted):
                pending.append((dep, frozenset(dep.extras)))
    return seen


def owners() -> dict[str, frozenset[str]]:
    return module_owners()


def _tracked(*pathspecs: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", *pathspecs], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [p for p in listed.stdout.split() if (ROOT / p).exists()]


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(n.lineno for n in ast.walk(inner) if isinstance(n, ast.Import | ast.ImportFrom))
    return lines


def imports(directory: str, package: str) -> dict[str, list[tuple[str, bool]]]:
    """Module -> [(file:line, at module level)] for every absolute import outside the package and
    the standard library."""
    found: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for path in _tracked(f"{directory}/{package}/*.py"):
        tree = ast.parse((ROOT / path).read_text(), filename=path)
        skip = _type_checking_only(tree)
        top = {id(n) for n in tree.body} | {
            id(n) for stmt in tree.body if isinstance(stmt, ast.Try) for n in stmt.body
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                # A name may be a submodule (`from opentelemetry import trace`); the lookup falls
                # back to the module when it is not.
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] in sys.stdlib_module_names or name.split(".")[0] == package:
                    continue
                found[name].append((f"{path}:{node.lineno}", id(node) in top))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_import_of_the_installed_packages_is_in_the_image(service):
    by_pip = installed_by_pip(service)
    projects = {
        d: tomllib.loads((ROOT / d / "pyproject.toml").read_text())["project"]
        for d in project_packages(service)
    }
    own = {m: _norm(projects[d]["name"]) for d, m in project_packages(service).items()}
    in_image = by_pip | set(own.values())
    missing: list[str] = []
    for directory, package in project_packages(service).items():
        for module, sites in sorted(imports(directory, package).items()):
            root = module.split(".")[0]
            if root in own:
                continue
            parts = module.split(".")
            prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
            provider = next((owners()[p] for p in prefixes if p in owners()), set())
            if provider & in_image:
                continue
            if root in OPTIONAL:
                at_top = [site for site, top in sites if top]
                assert not at_top, f"{service}: optional {root} is imported at module level: {at_top}"
                continue
            where = ", ".join(site for site, _ in sites[:3])
            missing.append(
                f"{module} ({', '.join(sorted(provider)) or 'no distribution provides it'}) at {where}"
            )
    assert not missing, f"the {service} image would fail to import: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_dependencies_the_packages_declare_come_with_the_requirements(service):
    """The project packages install with --no-deps: what their pyproject.toml declares must come
    from the service's requirements (optional extras excepted: they are not installed)."""
    by_pip = installed_by_pip(service)
    own = {
        _norm(tomllib.loads((ROOT / d / "pyproject.toml").read_text())["project"]["name"])
        for d in project_packages(service)
    }
    for directory in project_packages(service):
        declared = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"].get(
            "dependencies", []
        )
        names = {_norm(Requirement(spec).name) for spec in declared}
        assert not names - by_pip - own, (
            f"{service}: {directory} declares {sorted(names - by_pip - own)}, which requirements/{service}.txt does not install"
        )


def test_optional_imports_are_few_and_known():
    """The allowance above is not a way around the check: every entry is still imported somewhere."""
    seen = set()
    for service in SERVICES:
        for directory, package in project_packages(service).items():
            seen |= {m.split(".")[0] for m in imports(directory, package)}
    assert set(OPTIONAL) <= seen
