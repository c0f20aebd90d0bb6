"""Rendered chart objects and parsed Dockerfiles, produced by k8s/tools in k8s/.venv.

Helm's engine and BuildKit's parser live in a venv of their own (see k8s/k8s.mk); these tests
run in the services' venv because they also import the services' settings classes.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S_PYTHON = ROOT / "k8s" / ".venv" / "bin" / "python"
# The helpers in k8s_objects.py, importable by name from the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _run(["make", "-s", "--no-print-directory", "-f", "k8s/k8s.mk", "k8s-venv"])
    out = tmp_path_factory.mktemp("k8s-render")
    _run([str(K8S_PYTHON), "-m", "k8stools", "export", str(out)])
    return out


@pytest.fixture(scope="session")
def rendered(export_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Values case ("default" or a ci/ file's stem) -> every rendered object."""
    cases = {p.stem: json.loads(p.read_text()) for p in export_dir.glob("*.json") if p.stem != "dockerfiles"}
    assert "default" in cases and len(cases) >= 2, f"expected default + ci/ cases, got {sorted(cases)}"
    return {case: [entry["object"] for entry in entries] for case, entries in cases.items()}


@pytest.fixture(scope="session")
def notes(export_dir: Path) -> dict[str, str]:
    return {p.name.removesuffix(".NOTES.txt"): p.read_text() for p in export_dir.glob("*.NOTES.txt")}


@pytest.fixture(scope="session")
def dockerfiles(export_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Repository path -> BuildKit-parsed instructions."""
    return json.loads((export_dir / "dockerfiles.json").read_text())
