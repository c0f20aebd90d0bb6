"""The soak's machinery (tests/faults/soak.py, `make soak`) for 30 s on the harness already running:
every process sampled throughout, its asyncio task gauge read from its /metrics, the table and the
samples written. The bounds themselves need the long run (30 s is all warm-up); they are printed,
not asserted, here."""

from tests.faults.harness import Harness
from tests.faults.soak import OUT, processes, soak

SECONDS = 30.0
INTERVAL = 2.0


async def test_the_soak_samples_every_process(harness: Harness):
    out = OUT / "smoke"
    verdicts, samples, result, text = await soak(harness, SECONDS, INTERVAL, out)
    print("\n" + text)
    names = {r.name for r in processes(harness)}
    assert {v.process for v in verdicts} == names
    for name in names:
        mine = [s for s in samples if s.process == name]
        assert len(mine) >= SECONDS / INTERVAL - 2
        assert all(s.rss_kb > 0 and s.fds > 0 and s.tasks is not None and s.tasks > 0 for s in mine)
    assert (out / "results.md").read_text().count("\n| ") == len(names) + 1
    assert result.failed == 0 and result.rows_lost == 0
