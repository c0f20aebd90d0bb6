"""Which way imports may point: runtime code never reaches into tests, and a service's code never
into the tools or benchmarks built around it (they depend on it, not the reverse). The installed
packages (libs/*, services/*) stand on their own, and nothing puts code on a search path by hand."""

import ast
import re
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


def test_installed_packages_import_nothing_from_the_checkout_around_them():
    """libs/* and services/* are installed (make install, the images): `tests`, `tools` and `bench`
    exist only in a checkout. What the images install never imports the testkit either."""
    offenders = []
    for p in _python_files():
        if p.startswith(("libs/", "services/")) and not _is_test(p):
            forbidden = {"tests", "tools", "bench"}
            if not p.startswith("libs/testkit/"):
                forbidden.add("llmsuite_testkit")
            if _imported_roots(p) & forbidden:
                offenders.append((p, sorted(_imported_roots(p) & forbidden)))
    assert offenders == []


def _run_targets(path: str) -> set[str]:
    """Dotted names of the project's top-level packages in string constants (`-m tests.x` argv)."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"(tests|tools|bench)(\.\w+)+", node.value)
    }


def test_nothing_outside_the_tests_runs_a_module_of_them():
    """`python -m tests.<x>` from a tool or a benchmark is an import of the tests all the same: what
    they share lives in llmsuite_testkit (e.g. the fake OpenAI upstream)."""
    offenders = [
        (p, sorted(t for t in _run_targets(p) if t.startswith("tests.")))
        for p in _python_files()
        if not _is_test(p) and any(t.startswith("tests.") for t in _run_targets(p))
    ]
    assert offenders == []


def _sets_pythonpath(path: str) -> bool:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "PYTHONPATH" for k in node.keys
        ):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            if isinstance(node.slice, ast.Constant) and node.slice.value == "PYTHONPATH":
                return True
        if isinstance(node, ast.keyword) and node.arg == "PYTHONPATH":
            return True
    return False


def test_no_search_path_is_set_by_hand():
    """The packages are installed (make install, the images): no Makefile, Dockerfile, chart or
    subprocess sets PYTHONPATH. Documents (Markdown) are checked by test_readme."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [p for p in listed.stdout.split() if (ROOT / p).is_file() and not p.endswith(".md")]
    python = [p for p in _python_files() if _sets_pythonpath(p)]
    other = [
        p
        for p in files
        if not p.endswith((".py", ".png")) and "PYTHONPATH" in (ROOT / p).read_text(errors="replace")
    ]
    assert python == [] and other == []


# A function a reader can hold in their head: longer ones are split into named steps.
MAX_FUNCTION_LINES = 80


def test_no_function_outside_the_tests_is_longer_than_a_screenful():
    offenders = []
    for p in _python_files():
        if _is_test(p):
            continue
        tree = ast.parse((ROOT / p).read_text(), filename=p)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{p}:{node.lineno} {node.name} ({length} lines)")
    assert offenders == []
