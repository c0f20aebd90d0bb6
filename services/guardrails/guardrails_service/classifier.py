"""The pluggable model classifier: a deployment's own injection model behind an HTTP endpoint.

Asked only about texts whose cheap score is inconclusive, and only within the policy's budget: a
reply that comes later, or an error, leaves the cheap verdict (a warning) in place and is counted.
The endpoint takes POST {"text": ...} and answers {"score": p}, or the text-classification shape
([{"label": ..., "score": ...}, ...], possibly nested one level), where the labels naming an
injection or a jailbreak give p.
"""

import asyncio
import logging

import httpx

log = logging.getLogger(__name__)

_POSITIVE = ("inject", "jailbreak", "malicious", "unsafe")


class ClassifierUnavailable(Exception):
    pass


def probability(reply: object) -> float:
    """p from either reply shape; raises ValueError on anything else."""
    if isinstance(reply, dict) and isinstance(reply.get("score"), int | float):
        return float(reply["score"])
    if isinstance(reply, list) and reply and isinstance(reply[0], list):
        reply = reply[0]
    if isinstance(reply, list) and all(isinstance(r, dict) for r in reply):
        scores = [
            float(r["score"])
            for r in reply
            if isinstance(r.get("score"), int | float)
            and any(k in str(r.get("label", "")).lower() for k in _POSITIVE)
        ]
        if scores:
            return max(scores)
        if reply:
            return 0.0
    raise ValueError("unrecognised classifier reply")


class HttpClassifier:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # One client for every endpoint the policies name; connections are reused per host.
        self._client = httpx.AsyncClient(transport=transport)

    async def score(self, url: str, text: str, budget_ms: float) -> float:
        seconds = budget_ms / 1000
        try:
            # The whole exchange within the budget, whatever stage it is at.
            async with asyncio.timeout(seconds):
                response = await self._client.post(url, json={"text": text}, timeout=seconds)
            response.raise_for_status()
            return probability(response.json())
        except (httpx.HTTPError, ValueError, TimeoutError) as err:
            raise ClassifierUnavailable(type(err).__name__) from err

    async def aclose(self) -> None:
        await self._client.aclose()
