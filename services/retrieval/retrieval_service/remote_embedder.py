"""Embeddings from an OpenAI-compatible /v1/embeddings endpoint (TEI, vLLM, OpenAI, the gateway).

Chunk sizes need a token count before anything is sent; without the remote model's
tokenizer the service counts with `chunking.approx_tokens`, which errs high, so chunks
stay inside the configured window.
"""

import asyncio
import base64
import logging

import httpx
import numpy as np
from llmsuite_common.errors import DeadlineExceeded, InvalidArgument, Unavailable

from .chunking import approx_tokens

log = logging.getLogger(__name__)


class RemoteEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        max_tokens: int,
        batch_size: int,
        connect_timeout: float = 5.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(30.0, connect=connect_timeout)
        )
        self._dimension = 0

    @property
    def name(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        if not self._dimension:
            raise Unavailable("the embedding endpoint has not been probed yet")
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    async def load(self, *, timeout: float = 30.0) -> None:
        """Learns the dimension from one real call, so a wrong URL fails at start-up."""
        loop = asyncio.get_running_loop()
        probe = await self.embed(["dimension probe"], deadline=loop.time() + timeout)
        self._dimension = int(probe.shape[1])
        log.info("embedding endpoint ready", extra={"model": self._model, "dimension": self._dimension})

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        loop = asyncio.get_running_loop()
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self._batch_size):
            remaining = 30.0 if deadline is None else deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed while embedding")
            rows.append(await self._call(texts[start : start + self._batch_size], remaining))
        if not rows:
            return np.empty((0, self._dimension), dtype=np.float32)
        out = np.vstack(rows).astype(np.float32)
        # Not every server normalises; cosine search and the cache assume unit length.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    async def _call(self, batch: list[str], timeout: float) -> np.ndarray:
        try:
            response = await self._client.post(
                self._url,
                json={"model": self._model, "input": batch, "encoding_format": "base64"},
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded("the embedding endpoint did not answer in time") from exc
        except httpx.HTTPError as exc:
            log.warning("embedding endpoint unreachable", extra={"error": type(exc).__name__})
            raise Unavailable("the embedding endpoint is unavailable") from exc
        if response.status_code == 400:
            raise InvalidArgument("the embedding endpoint rejected the input", param="input")
        if response.status_code != 200:
            log.warning("embedding endpoint failed", extra={"status": response.status_code})
            raise Unavailable("the embedding endpoint failed")
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = [_decode(d["embedding"]) for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable("the embedding endpoint sent an unreadable answer") from exc
        if len(vectors) != len(batch):
            raise Unavailable("the embedding endpoint sent the wrong number of embeddings")
        return np.vstack(vectors)

    async def close(self) -> None:
        await self._client.aclose()


def _decode(value: str | list[float]) -> np.ndarray:
    # Servers that ignore encoding_format send a list of floats instead.
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype=np.float32)
