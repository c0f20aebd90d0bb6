"""Credentials for calling retrieval directly: a service token, from the gateway or given.

    tokens = GatewayTokens("https://llm.example.com", api_key=os.environ["LLMSUITE_API_KEY"])
    async with RetrievalClient("dns:///retrieval:50062", credentials=tokens) as rc: ...

GatewayTokens exchanges the team's API key at `POST /v1/auth/token` and exchanges it again
shortly before the token expires, so a long-running client never holds an expired one.
"""

import asyncio
import time
from collections.abc import Callable

import httpx
from llmsuite_common.call_auth import StaticCredentials

__all__ = ["GatewayTokens", "StaticCredentials", "TokenExchangeError"]


class TokenExchangeError(RuntimeError):
    """The gateway refused the exchange; the message is its error's."""


class GatewayTokens:
    def __init__(
        self,
        gateway_url: str,
        api_key: str,
        *,
        scope: str | None = None,
        refresh_seconds: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = gateway_url.rstrip("/") + "/v1/auth/token"
        self._api_key = api_key
        self._scope = scope
        self._refresh = refresh_seconds
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._token = ""
        self._expires = 0.0
        self._exchanging = asyncio.Lock()
        self.exchanges = 0

    def _fresh(self) -> bool:
        return bool(self._token) and self._expires - self._refresh > self._clock()

    async def ready(self) -> None:
        """Exchanges the key when there is no token yet or it is about to expire; concurrent calls
        that find it so wait for one exchange rather than each making their own."""
        if self._fresh():
            return
        async with self._exchanging:
            if not self._fresh():
                await self._exchange()

    async def _exchange(self) -> None:
        body = {"audience": "retrieval"} | ({"scope": self._scope} if self._scope else {})
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, trust_env=False
        ) as http:
            reply = await http.post(
                self._url, json=body, headers={"authorization": f"Bearer {self._api_key}"}
            )
        if reply.status_code != 200:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:200]
            raise TokenExchangeError(f"token exchange failed ({reply.status_code}): {message}")
        data = reply.json()
        self._token = data["access_token"]
        self._expires = self._clock() + float(data["expires_in"])
        self.exchanges += 1

    def authorization(self, audience: str) -> str | None:
        return "Bearer " + self._token if self._token else None
