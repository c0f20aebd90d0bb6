"""Many clients at once through the real chain: every streamed answer carries exactly the upstream's
chunks, in order, with their text; every non-streamed answer has the upstream's text."""

import pytest

from bench.config import BenchSettings
from bench.targets import Target
from tests.perf.budget import FIDELITY_ANSWERS_PER_CLIENT, FIDELITY_CONCURRENCY
from tests.perf.load import drive


@pytest.mark.parametrize("shape", ["short", "long"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_every_client_gets_the_upstreams_chunks(
    perf_cfg: BenchSettings, chain: Target, shape: str, stream: bool
) -> None:
    requests = FIDELITY_CONCURRENCY * FIDELITY_ANSWERS_PER_CLIENT[shape]
    batch = drive(perf_cfg, chain, shape, stream, requests, FIDELITY_CONCURRENCY)
    r = batch.result
    print(
        f"\n[fidelity] {shape} {'stream' if stream else 'non-stream'} c={FIDELITY_CONCURRENCY}: "
        f"{r['ok']} answers, {r['faithful']} faithful, {r['errors']} errors {r['error_kinds'] or ''}"
    )
    assert r["errors"] == 0, r["error_kinds"]
    assert r["ok"] == requests
    assert r["faithful"] == requests, f"{requests - r['faithful']} answers differ from the upstream's"
    if stream:
        assert r["chunks_seen"] == [perf_cfg.shape(shape).chunks] * requests
