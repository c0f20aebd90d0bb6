"""The committed evaluation data (built by build_data.py), loaded."""

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Prompt:
    text: str
    label: int
    source: str
    group: str = ""
    split: str = ""


def _read(name: str) -> list[dict[str, object]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def prompts(split: str) -> list[Prompt]:
    """`train`, `dev` or `heldout`."""
    return [
        Prompt(str(r["text"]), int(r["label"]), str(r["source"]), str(r["group"]), str(r["split"]))  # type: ignore[call-overload]
        for r in _read("prompts.jsonl.gz")
        if r["split"] == split
    ]


def independent() -> list[Prompt]:
    """In-the-wild jailbreaks (label 1) and NotInject (label 0): never fitted or tuned on."""
    return [Prompt(str(r["text"]), int(r["label"]), str(r["source"])) for r in _read("independent.jsonl.gz")]  # type: ignore[call-overload]


def contexts() -> list[str]:
    return [str(r["text"]) for r in _read("contexts.jsonl.gz")]
