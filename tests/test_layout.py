"""Which way imports may point: runtime code never reaches into tests, and a service's code never
into the tools or benchmarks built around it (they depend on it, not the reverse)."""

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in listed.stdout.split() if not p.startswith("libs/generated/")]


def _imported_roots(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _is_test(path: str) -> bool:
    parts = Path(path).parts
    return parts[0] == "tests" or "tests" in parts[1:-1]


def test_nothing_outside_the_tests_imports_from_them():
    offenders = [p for p in _python_files() if not _is_test(p) and "tests" in _imported_roots(p)]
    assert offenders == []


def test_service_code_imports_neither_tools_nor_bench():
    offenders = [
        (p, sorted(_imported_roots(p) & {"tools", "bench"}))
        for p in _python_files()
        if p.startswith("services/") and not _is_test(p) and _imported_roots(p) & {"tools", "bench"}
    ]
    assert offenders == []
