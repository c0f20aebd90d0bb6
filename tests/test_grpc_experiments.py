"""Every service's entry point sets the suite's GRPC_EXPERIMENTS before grpc reads it (at its first
import), and an operator's own value wins."""

import os
import subprocess
import sys

import pytest
from llmsuite_common.grpc_experiments import DEFAULT

SERVICES = ("gateway", "guardrails", "retrieval", "generation")

# Records GRPC_EXPERIMENTS as it is when grpc is first imported, then imports the entry point
# (its `main()` does not run: the module is not __main__).
PROBE = """
import os, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_EXPERIMENTS"))
        return None
sys.meta_path.insert(0, Probe())
import {package}.__main__
print(seen[0] if seen else "grpc never imported")
"""


def _seen_by_grpc(service: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=f"{service}_service")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_entry_point_sets_the_default_before_grpc_reads_it(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert _seen_by_grpc(service, env) == DEFAULT


def test_an_operators_value_is_kept() -> None:
    assert _seen_by_grpc("generation", {**os.environ, "GRPC_EXPERIMENTS": "tcp_rcv_lowat"}) == "tcp_rcv_lowat"


def test_grpc_knows_every_experiment_named() -> None:
    # A grpcio that no longer has one of them logs this and runs without the setting.
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    out = subprocess.run(
        [sys.executable, "-c", "import llmsuite_common, grpc; grpc.insecure_channel('127.0.0.1:1').close()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Unknown experiment" not in out.stderr
