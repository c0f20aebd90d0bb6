"""One harness (tests/faults/harness.py) for every fault test, and their reports, printed and
kept in .run/faults/ (the tables of docs/operations.md#failure-modes come from there).

Package-scoped: its dozen processes stop once the last fault test is done, not at the end of a
whole `make test` session, whose later tests (CPU budgets among them) must not share the machine
with them."""

from collections.abc import Iterator

import pytest

from tests.faults.harness import Harness, running_harness
from tests.faults.load import RESULTS, Report


@pytest.fixture(scope="package")
def harness() -> Iterator[Harness]:
    with running_harness() as h:
        yield h


@pytest.fixture(scope="package")
def record() -> Iterator[list[Report]]:
    reports: list[Report] = []
    yield reports
    if reports:
        RESULTS.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(r.table() for r in reports) + "\n"
        (RESULTS / "results.md").write_text(text)
        print("\n" + text)
