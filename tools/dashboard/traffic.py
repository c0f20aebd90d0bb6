"""A scripted mix of client traffic against the gateway, bounded in time and count."""

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import httpx
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

MODEL = "fake-model"
# Upstream models the fake upstream is scripted to answer slowly or with a 500.
SLOW_MODEL = "fake-slow"
BROKEN_MODEL = "fake-broken"
DENY_TERM = "forbidden-topic"
# Sends one request of a kind; returns the HTTP status.
Sender = Callable[[httpx.Client, random.Random], int]
# A second organization, so the per-organization token and cost panels have more than one line.
TENANT_ORG = "acme"
COLLECTION = "dashboard"
DOCUMENTS = {
    "volcanoes": "Mount Etna in Sicily is one of the most active volcanoes in the world.",
    "coffee": "The office coffee machine is descaled every Tuesday morning until 10 am.",
    "tides": "Tides are caused mainly by the gravitational pull of the Moon on the oceans.",
}
QUESTIONS = ["When is the coffee machine unavailable?", "What causes tides?", "Which volcano erupts often?"]


@dataclass
class Mix:
    gateway_url: str
    api_key: str
    # Keys of other organizations; generated traffic is spread over these and `api_key`.
    tenant_keys: tuple[str, ...] = ()
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _chat(self, client: httpx.Client, body: dict, key: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        if body.get("stream"):
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                for _ in response.iter_lines():
                    pass
                return response.status_code
        return client.post("/v1/chat/completions", json=body, headers=headers).status_code

    def _key(self, rng: random.Random) -> str:
        return rng.choice((self.api_key, *self.tenant_keys))

    def success(self, client: httpx.Client, rng: random.Random) -> int:
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(2, 8)))
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"Say {words}"}]}
        return self._chat(client, body, self._key(rng))

    def cached(self, client: httpx.Client, rng: random.Random) -> int:
        # temperature 0 is deterministic, so the gateway's result cache may answer repeats.
        content = f"Repeat after me: {rng.choice(['one', 'two', 'three'])}"
        return self._chat(
            client,
            {"model": MODEL, "temperature": 0, "messages": [{"role": "user", "content": content}]},
            self._key(rng),
        )

    def stream(self, client: httpx.Client, rng: random.Random) -> int:
        body = {
            "model": SLOW_MODEL,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Tell me a long story please"}],
        }
        return self._chat(client, body, self._key(rng))

    def rag(self, client: httpx.Client, rng: random.Random) -> int:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
            "retrieval": {"collection": COLLECTION, "k": 2},
        }
        return self._chat(client, body)

    def blocked(self, client: httpx.Client, rng: random.Random) -> int:
        content = f"Explain the {DENY_TERM} in detail"
        return self._chat(client, {"model": MODEL, "messages": [{"role": "user", "content": content}]})

    def upstream_500(self, client: httpx.Client, rng: random.Random) -> int:
        return self._chat(client, {"model": BROKEN_MODEL, "messages": [{"role": "user", "content": "hello"}]})

    def bad_key(self, client: httpx.Client, rng: random.Random) -> int:
        return self._chat(
            client, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, key="sk-wrong"
        )

    def models(self, client: httpx.Client, rng: random.Random) -> int:
        return client.get("/v1/models", headers={"Authorization": f"Bearer {self.api_key}"}).status_code

    def kinds(self) -> dict[str, tuple[Sender, int]]:
        """Request kind -> (sender, weight)."""
        return {
            "success": (self.success, 30),
            "cached": (self.cached, 10),
            "stream": (self.stream, 15),
            "rag": (self.rag, 15),
            "blocked": (self.blocked, 6),
            "upstream_500": (self.upstream_500, 4),
            "bad_key": (self.bad_key, 5),
            "models": (self.models, 5),
        }

    def _record(self, kind: str, send: Sender, client: httpx.Client, rng: random.Random) -> None:
        try:
            status: int | str = send(client, rng)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with self.lock:
            self.outcomes[f"{kind} {status}"] += 1

    def prelude(self, breaker_failures: int) -> None:
        """Every kind of request once before the mix, so every panel has a line from the first
        scrapes: a cached request twice (the repeat is a hit), the broken model until its
        deployment's breaker opens, and three slow streams at once on one key, whose two-stream
        limit refuses one (429)."""
        with httpx.Client(base_url=self.gateway_url, timeout=30) as client:
            for kind, (send, _) in self.kinds().items():
                self._record(kind, send, client, random.Random(0))
            self._record("cached", self.cached, client, random.Random(0))
            for _ in range(breaker_failures):
                self._record("upstream_500", self.upstream_500, client, random.Random(0))

        def stream() -> None:
            with httpx.Client(base_url=self.gateway_url, timeout=30) as own:
                body = {
                    "model": SLOW_MODEL,
                    "stream": True,
                    "messages": [{"role": "user", "content": "Go on"}],
                }
                self._record("stream", lambda c, _rng: self._chat(c, body), own, random.Random(0))

        streams = [threading.Thread(target=stream) for _ in range(3)]
        for t in streams:
            t.start()
        for t in streams:
            t.join(timeout=60)

    def worker(self, seed: int, deadline: float, pace: Callable[[float], float], max_requests: int) -> None:
        rng = random.Random(seed)
        kinds = self.kinds()
        names = list(kinds)
        weights = [kinds[n][1] for n in names]
        with httpx.Client(base_url=self.gateway_url, timeout=30) as client:
            for _ in range(max_requests):
                now = time.monotonic()
                if now >= deadline:
                    return
                kind = rng.choices(names, weights)[0]
                self._record(kind, kinds[kind][0], client, rng)
                time.sleep(pace(now))


def tenant_key(gateway_url: str, admin_key: str) -> str:
    """Creates TENANT_ORG and a member key of it through the admin API; returns the key."""
    with httpx.Client(
        base_url=gateway_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as client:
        client.post("/v1/admin/orgs", json={"id": TENANT_ORG, "name": "Acme"}).raise_for_status()
        created = client.post(
            "/v1/admin/keys",
            # The same two-stream limit as the bootstrap key (GATEWAY_KEY_MAX_STREAMS in render.py).
            json={"org_id": TENANT_ORG, "name": "dashboard", "settings": {"max_streams": 2}},
        )
        created.raise_for_status()
        return str(created.json()["key"])


def ingest(retrieval_port: int, metadata: tuple[tuple[str, str], ...]) -> None:
    """`metadata` carries a service token for the default org (retrieval verifies every caller)."""
    with grpc.insecure_channel(f"127.0.0.1:{retrieval_port}") as channel:
        retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
            retrieval_pb2.IngestRequest(
                context=common_pb2.RequestContext(org_id="default"),
                collection=COLLECTION,
                documents=[retrieval_pb2.Document(id=k, text=v) for k, v in DOCUMENTS.items()],
            ),
            timeout=120,
            metadata=metadata,
        )
