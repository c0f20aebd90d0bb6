"""The embedded default: the real Gemma model served by llama.cpp, through the full chain."""

import dataclasses

import openai
import pytest
from llmsuite_testkit.processes import ProcessGroup, free_port, python_service

from tools.localsuite.model_server import model_server
from tools.localsuite.suite import LOCAL_MODEL, SuiteConfig, service_envs

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def local_model_gateway(suite):
    """A generation + gateway pair on the local model, sharing the suite's guardrails and retrieval."""
    ports = dataclasses.replace(
        suite.cfg.ports, gateway=free_port(), generation=free_port(), model=free_port()
    )
    cfg = SuiteConfig(api_key=suite.api_key, data_dir=suite.cfg.data_dir, ports=ports)
    envs = service_envs(cfg)
    group = ProcessGroup()
    try:
        group.start_many(
            [
                model_server(ports.model, cfg.data_dir, suite.log_dir),
                python_service("generation", ports.generation, envs["generation"], suite.log_dir),
            ],
            timeout=180,
        )
        group.start(python_service("gateway", ports.gateway, envs["gateway"], suite.log_dir), timeout=60)
        yield f"http://127.0.0.1:{ports.gateway}/v1"
    finally:
        group.stop()


def test_local_model_streams_tokens_through_the_chain(local_model_gateway, suite):
    client = openai.OpenAI(base_url=local_model_gateway, api_key=suite.api_key, max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[
            {"role": "user", "content": "The support desk is open from 8 am to 6 pm. When is it open?"}
        ],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3, pieces
    assert "".join(pieces).strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= len(pieces) - 1
