"""What a check found (the unit of every verdict, reason and flag) and how its run went."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    code: str
    message: str
    action: str
    score: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class CheckRun:
    """How one check went on one call: its time, and whether it fired, overran or failed."""

    check: str
    elapsed_us: int
    fired: bool = False
    over_budget: bool = False
    failed: bool = False
