"""Collections, documents, search and embeddings through the gateway's HTTP API, on the real suite."""

import asyncio
import base64

import httpx
import numpy as np
import openai
from retrieval_service.remote_embedder import RemoteEmbedder

HANDBOOK = {
    "leave": "Employees get 25 days of paid leave a year. Unused leave carries over until March.",
    "expenses": "Submit travel expenses within 30 days with receipts attached. Meals are capped at 40 euros.",
    "security": "Laptops must use full-disk encryption. Report a lost device to the security desk at once.",
}
HTML = "<html><body><h1>Parking</h1><p>Visitor parking is on level minus two.</p></body></html>"


def client(suite) -> httpx.Client:
    return httpx.Client(
        base_url=f"{suite.gateway_url}/v1", headers={"authorization": f"Bearer {suite.api_key}"}, timeout=60
    )


def test_collections_documents_and_search_over_http(suite, unique_name):
    with client(suite) as http:
        made = http.post("/collections", json={"name": unique_name, "description": "HR handbook"})
        assert made.status_code == 201, made.text
        assert made.json()["created"] is True
        assert http.post("/collections", json={"name": unique_name}).status_code == 200

        docs = [{"id": k, "text": v, "metadata": {"team": "hr"}} for k, v in HANDBOOK.items()]
        docs.append(
            {
                "id": "parking.html",
                "data": base64.b64encode(HTML.encode()).decode(),
                "metadata": {"team": "ops"},
            }
        )
        docs.append(
            {
                "id": "bad.pdf",
                "data": base64.b64encode(b"%PDF-1.4 broken").decode(),
                "content_type": "application/pdf",
            }
        )
        ingested = http.post(f"/collections/{unique_name}/documents", json={"documents": docs})
        assert ingested.status_code == 200, ingested.text
        body = ingested.json()
        assert [d["id"] for d in body["data"]] == [d["id"] for d in docs]
        assert (body["documents"], body["failed"]) == (4, 1)
        assert (
            body["data"][-1]["status"] == "failed" and body["data"][-1]["error"]["code"] == "invalid_request"
        )

        again = http.post(f"/collections/{unique_name}/documents", json={"documents": docs[:3]}).json()
        assert {d["status"] for d in again["data"]} == {"unchanged"}

        found = http.post(
            f"/collections/{unique_name}/search", json={"query": "where do visitors park", "k": 2}
        )
        assert found.status_code == 200, found.text
        hits = found.json()["data"]
        assert hits[0]["source_id"] == "parking.html" and "level minus two" in hits[0]["text"]
        hr = http.post(
            f"/collections/{unique_name}/search",
            json={"query": "where do visitors park", "k": 5, "filter": {"team": "hr"}},
        ).json()["data"]
        assert {h["source_id"] for h in hr} == set(HANDBOOK)

        chunk = http.get(f"/chunks/{hits[0]['chunk_id']}").json()
        assert chunk["text"] == hits[0]["text"] and chunk["collection"] == unique_name

        listed = {c["name"]: c for c in http.get("/collections").json()["data"]}
        assert listed[unique_name]["documents"] == 4

        gone = http.delete(f"/collections/{unique_name}/documents/parking.html")
        assert gone.status_code == 200 and gone.json()["chunks"] == 1
        assert http.delete(f"/collections/{unique_name}/documents/parking.html").status_code == 404
        after = http.post(
            f"/collections/{unique_name}/search", json={"query": "visitor parking", "k": 10}
        ).json()
        assert "parking.html" not in {h["source_id"] for h in after["data"]}

        deleted = http.delete(f"/collections/{unique_name}")
        assert deleted.status_code == 200 and deleted.json()["documents"] == 3
        missing = http.delete(f"/collections/{unique_name}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_bad_requests_get_openai_errors(suite, unique_name):
    with client(suite) as http:
        bad_name = http.post("/collections", json={"name": "no spaces allowed"})
        assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
        two = http.post(
            f"/collections/{unique_name}/documents",
            json={"documents": [{"id": "x", "text": "a", "uri": "s3://b/k"}]},
        )
        assert two.status_code == 400 and "exactly one" in two.json()["error"]["message"]
        weight = http.post(f"/collections/{unique_name}/search", json={"query": "q", "hybrid_weight": 2})
        assert weight.status_code == 400 and weight.json()["error"]["param"] == "hybrid_weight"
        chunk = http.get("/chunks/not-a-uuid")
        assert chunk.status_code == 400 and chunk.json()["error"]["param"] == "chunk_id"
        assert httpx.get(f"{suite.gateway_url}/v1/collections", timeout=10).status_code == 401


def test_embeddings_with_the_openai_client(suite):
    api = openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=suite.api_key, max_retries=0)
    texts = [
        "How many days of leave do I get?",
        "Employees get 25 days of paid leave a year.",
        "Tides follow the Moon.",
    ]
    # The client asks for base64 unless told otherwise; both encodings must agree.
    b64 = api.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    floats = api.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    a = np.array([d.embedding for d in b64.data])
    b = np.array([d.embedding for d in floats.data])
    assert a.shape == (3, 384) and b64.model == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert b64.usage.prompt_tokens > 10
    assert a[0] @ a[1] > a[0] @ a[2] + 0.2
    try:
        api.embeddings.create(model="text-embedding-3-large", input="x")
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as err:
        assert err.code == "model_not_found"


def test_the_remote_embedder_reads_an_openai_compatible_endpoint(suite):
    """The pluggable remote embedder pointed at this gateway gives the local model's vectors."""

    async def run() -> tuple[np.ndarray, int]:
        remote = RemoteEmbedder(
            base_url=f"{suite.gateway_url}/v1",
            model="all-MiniLM-L6-v2",
            api_key=suite.api_key,
            max_tokens=254,
            batch_size=2,
        )
        try:
            await remote.load(timeout=30)
            vectors = await remote.embed(
                list(HANDBOOK.values()), deadline=asyncio.get_running_loop().time() + 30
            )
        finally:
            await remote.close()
        return vectors, remote.dimension

    vectors, dimension = asyncio.run(run())
    with client(suite) as http:
        direct = http.post(
            "/embeddings", json={"model": "all-MiniLM-L6-v2", "input": list(HANDBOOK.values())}
        ).json()
    assert dimension == 384
    np.testing.assert_allclose(vectors, np.array([d["embedding"] for d in direct["data"]]), atol=1e-5)
