"""What the numbers were measured on: machine, commit and package versions."""

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from .processes import ROOT

PACKAGES = (
    "fastapi",
    "uvicorn",
    "uvloop",
    "httpx",
    "httpcore",
    "grpcio",
    "protobuf",
    "pydantic",
    "aiohttp",
    "torch",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def litellm_version(litellm_bin: Path) -> str:
    python = litellm_bin / "python"
    if not python.exists():
        return "-"
    try:
        out = subprocess.run(
            [str(python), "-c", "from importlib.metadata import version; print(version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return out.stdout.strip() or "-"


def describe(litellm_bin: Path) -> dict:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain"))
    return {
        "cpu": _cpu_model(),
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+changes" if dirty else ""),
        "versions": {**{name: _version(name) for name in PACKAGES}, "litellm": litellm_version(litellm_bin)},
    }
