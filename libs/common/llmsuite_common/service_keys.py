"""Make (or rotate) the key pair behind service tokens.

    python -m llmsuite_common.service_keys --out keys/            # signing-key.pem + jwks.json
    python -m llmsuite_common.service_keys --out keys/ --rotate   # new signing key, old public keys kept
    python -m llmsuite_common.service_keys --out keys/ --kubernetes llmsuite | kubectl apply -f -   # the chart fullname

The gateway mounts signing-key.pem (GATEWAY_TOKEN_SIGNING_KEY_FILE); every gRPC service mounts
jwks.json (GRPC_AUTH_PUBLIC_KEYS_FILE). To rotate: run with --rotate, roll the services (they now
accept both keys), then roll the gateway (it signs with the new one); after the token lifetime,
drop the old key from jwks.json with --prune.
"""

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .service_tokens import SigningKey

SIGNING_KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"


def save_key_pair(
    key: SigningKey, out: Path, *, also_trusted: Sequence[dict[str, str]] = (), private: bool = True
) -> tuple[Path, Path]:
    """`key` as signing-key.pem (when `private`) and jwks.json (its public key first, then the
    other keys services should still trust); returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = out / SIGNING_KEY_FILE, out / JWKS_FILE
    if private:
        # Written owner-only before any byte of the key lands in it.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.pem())
    keys = [key.jwk, *(k for k in also_trusted if k.get("kid") != key.kid)]
    jwks_path.write_text(json.dumps({"keys": keys}, indent=2) + "\n")
    return key_path, jwks_path


def write_keys(out: Path, *, rotate: bool = False, prune: bool = False) -> SigningKey:
    jwks_path, key_path = out / JWKS_FILE, out / SIGNING_KEY_FILE
    old: list[dict[str, str]] = []
    if rotate and jwks_path.exists():
        old = json.loads(jwks_path.read_text()).get("keys", [])
    if prune:
        if not key_path.exists():
            raise SystemExit(f"{key_path} does not exist: nothing to prune against")
        key = SigningKey.from_file(key_path)
    else:
        key = SigningKey.generate()
    save_key_pair(key, out, also_trusted=old, private=not prune)
    return key


def kubernetes_secrets(out: Path, fullname: str) -> str:
    """Two Secrets, as the chart expects them: the private key for the gateway alone, the public
    keys for every service."""

    def secret(name: str, filename: str) -> str:
        data = base64.b64encode((out / filename).read_bytes()).decode()
        return (
            "apiVersion: v1\nkind: Secret\nmetadata:\n"
            f"  name: {name}\ntype: Opaque\ndata:\n  {filename}: {data}\n"
        )

    return "---\n".join(
        [
            secret(f"{fullname}-token-signing-key", SIGNING_KEY_FILE),
            secret(f"{fullname}-token-public-keys", JWKS_FILE),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for signing-key.pem and jwks.json")
    parser.add_argument("--rotate", action="store_true", help="new signing key; keep the old public keys")
    parser.add_argument("--prune", action="store_true", help="keep only the current signing key's public key")
    parser.add_argument(
        "--kubernetes",
        metavar="FULLNAME",
        help="print the two Secrets, named <FULLNAME>-token-*, as the chart expects",
    )
    args = parser.parse_args(argv)
    key = write_keys(args.out, rotate=args.rotate, prune=args.prune)
    if args.kubernetes:
        sys.stdout.write(kubernetes_secrets(args.out, args.kubernetes))
    else:
        print(f"signing key {key.kid}: {args.out / SIGNING_KEY_FILE}; public keys: {args.out / JWKS_FILE}")


if __name__ == "__main__":
    main()
