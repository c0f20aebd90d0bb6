"""What a check found: the unit of every verdict, reason and flag."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    code: str
    message: str
    action: str
    score: float = 0.0
    count: int = 0
