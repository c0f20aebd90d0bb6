"""One harness (tests/faults/harness.py) for every fault test, and their reports, printed and
kept in .run/faults/ (the tables of docs/operations.md#failure-modes come from there)."""

from collections.abc import Iterator

import pytest

from tests.faults.harness import Harness, running_harness
from tests.faults.load import RESULTS, Report


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    with running_harness() as h:
        yield h


@pytest.fixture(scope="session")
def record() -> Iterator[list[Report]]:
    reports: list[Report] = []
    yield reports
    if reports:
        RESULTS.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(r.table() for r in reports) + "\n"
        (RESULTS / "results.md").write_text(text)
        print("\n" + text)
