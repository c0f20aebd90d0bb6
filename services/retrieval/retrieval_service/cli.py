"""Command line for the retrieval service, over its gRPC API.

    export LLMSUITE_API_KEY=llms_...            # a key with retrieval scopes
    python -m retrieval_service.cli --target 127.0.0.1:50062 ingest handbook docs/ s3://bucket/guide.pdf
    python -m retrieval_service.cli search handbook "how many days of leave?" -k 3 --filter team=hr

The API key is exchanged at the gateway (--gateway, LLMSUITE_GATEWAY_URL) for a short-lived
service token, refreshed as needed; --token (LLMSUITE_TOKEN) uses a token obtained elsewhere.

Local files and directories are read here and sent inline; s3:// and file:// URIs are
fetched by the service. Ingest shows a progress bar fed by the service's progress stream.
"""

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from llmsuite_common.errors import read_error_detail
from tqdm import tqdm

from .client import RetrievalClient, Source
from .credentials import GatewayTokens, StaticCredentials, TokenExchangeError
from .parsing import SUFFIXES


def _pairs(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {value!r}")
        out[key] = val
    return out


def sources(items: Sequence[str], metadata: dict[str, str]) -> Iterator[Source]:
    """URIs as they are; files as inline bytes; directories as every supported file below them."""
    for item in items:
        if "://" in item:
            yield Source(uri=item, metadata=metadata)
            continue
        path = Path(item)
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for file in files:
            yield Source(id=str(file), data=file.read_bytes(), metadata={**metadata, "path": str(file)})


async def ingest(client: RetrievalClient, args: argparse.Namespace) -> int:
    todo = list(sources(args.paths, _pairs(args.meta)))
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(todo), unit="doc", desc=f"ingest {args.collection}", file=sys.stderr) as bar:
        async for p in client.ingest(args.collection, todo, timeout=args.timeout):
            if p.status == p.FAILED:
                failed.append((p.source_id, p.error.message))
            bar.update(1)
            bar.set_postfix(chunks=p.chunks, failed=len(failed))
    for source_id, message in failed:
        print(f"failed: {source_id}: {message}", file=sys.stderr)
    print(f"{len(todo) - len(failed)} of {len(todo)} documents stored")
    return 1 if failed else 0


def credentials(args: argparse.Namespace) -> GatewayTokens | StaticCredentials:
    if args.token:
        return StaticCredentials(args.token)
    if not args.api_key:
        raise SystemExit("no credential: set LLMSUITE_API_KEY (or --api-key), or LLMSUITE_TOKEN (--token)")
    return GatewayTokens(args.gateway, args.api_key)


async def run(args: argparse.Namespace) -> int:
    client = RetrievalClient(
        args.target,
        credentials=credentials(args),
        timeout=args.timeout,
        tls_ca_file=args.tls_ca,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
    )
    async with client:
        if args.command == "collections":
            for c in await client.list_collections():
                print(
                    f"{c.name}\t{c.documents} documents\t{c.chunks} chunks\t{c.created_at}\t{c.description}"
                )
        elif args.command == "create":
            created = await client.create_collection(args.name, args.description)
            print(("created " if created.created else "exists ") + created.collection.name)
        elif args.command == "drop":
            dropped = await client.delete_collection(args.name)
            print(f"deleted {dropped.documents} documents, {dropped.chunks} chunks")
        elif args.command == "delete":
            deleted = await client.delete_documents(args.collection, args.ids)
            print(f"deleted {deleted.documents} documents, {deleted.chunks} chunks")
        elif args.command == "search":
            found = await client.search(
                args.collection, args.query, k=args.k, filter=_pairs(args.filter), hybrid_weight=args.hybrid
            )
            for chunk in found.chunks:
                print(f"{chunk.score:.3f}\t{chunk.source_id}#{chunk.ordinal}\t{chunk.text[:120]!r}")
        elif args.command == "ingest":
            return await ingest(client, args)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retrieval_service.cli", description=__doc__.split("\n")[0])
    p.add_argument("--target", default="127.0.0.1:50062", help="gRPC target of the retrieval service")
    p.add_argument(
        "--gateway",
        default=os.environ.get("LLMSUITE_GATEWAY_URL", "http://127.0.0.1:8080"),
        help="gateway that exchanges the API key for a token",
    )
    p.add_argument(
        "--api-key", default=os.environ.get("LLMSUITE_API_KEY", ""), help="API key (LLMSUITE_API_KEY)"
    )
    p.add_argument(
        "--token", default=os.environ.get("LLMSUITE_TOKEN", ""), help="service token (LLMSUITE_TOKEN)"
    )
    p.add_argument("--tls-ca", default="", help="CA bundle: the channel is TLS")
    p.add_argument("--tls-cert", default="", help="client certificate, for mutual TLS")
    p.add_argument("--tls-key", default="", help="client certificate's key")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of each call, in seconds")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("collections", help="list collections")
    create = sub.add_parser("create", help="create a collection")
    create.add_argument("name")
    create.add_argument("--description", default="")
    drop = sub.add_parser("drop", help="delete a collection and everything in it")
    drop.add_argument("name")
    ingest_p = sub.add_parser("ingest", help="ingest files, directories or s3:// / file:// URIs")
    ingest_p.add_argument("collection")
    ingest_p.add_argument("paths", nargs="+")
    ingest_p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    delete = sub.add_parser("delete", help="delete documents by id")
    delete.add_argument("collection")
    delete.add_argument("ids", nargs="+")
    search = sub.add_parser("search", help="search a collection")
    search.add_argument("collection")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    search.add_argument("--hybrid", type=float, default=0.0, help="full-text weight for hybrid search, 0-1")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except grpc.aio.AioRpcError as err:
        detail = read_error_detail(err)
        print(f"error: {err.code().name}: {detail.message if detail else err.details()}", file=sys.stderr)
        return 2
    except TokenExchangeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
