"""`llmsuite` command line for organizations and API keys, through the gateway's admin API.

    python -m gateway_service.cli orgs create acme --rpm 600
    python -m gateway_service.cli keys create --org acme --role member --user alice --tpm 20000
    python -m gateway_service.cli keys list --org acme
    python -m gateway_service.cli keys revoke <key id>
    python -m gateway_service.cli requests get <x-request-id>
    python -m gateway_service.cli requests list --end-user alice --since 2026-01-01
    python -m gateway_service.cli requests list --model gpt-4o --status 5xx --verdict block --all
    python -m gateway_service.cli usage --end-user alice

The gateway URL and an admin key come from LLMSUITE_URL (default http://127.0.0.1:8080) and
LLMSUITE_API_KEY; every call is checked against that key's own scope.
"""

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx

from .edge.policy import LOG_POLICIES

TIMEOUT_SECONDS = 30.0
LIMIT_OPTIONS = (
    "rpm",
    "tpm",
    "max_streams",
    "user_rpm",
    "user_tpm",
    "max_tokens",
    "budget_usd",
    "user_budget_usd",
)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (*LIMIT_OPTIONS, "cache_ttl_seconds"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "models", None):
        out["allowed_models"] = [m for m in args.models.split(",") if m]
    if getattr(args, "log_policy", None):
        out["log_policy"] = args.log_policy
    return out


def _limit_options(parser: argparse.ArgumentParser) -> None:
    for name in LIMIT_OPTIONS:
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=float if name.endswith("budget_usd") else int
        )
    parser.add_argument("--models", help="comma-separated allowed models")
    parser.add_argument(
        "--log-policy",
        dest="log_policy",
        choices=LOG_POLICIES,
        help="what the request log keeps of conversations",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="llmsuite", description="Manage llmsuite organizations and API keys.")
    areas = root.add_subparsers(dest="area", required=True)

    orgs = areas.add_parser("orgs").add_subparsers(dest="action", required=True)
    create_org = orgs.add_parser("create")
    create_org.add_argument("id")
    create_org.add_argument("--name", default="")
    create_org.add_argument("--cache-ttl-seconds", dest="cache_ttl_seconds", type=int)
    _limit_options(create_org)
    orgs.add_parser("list")

    keys = areas.add_parser("keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create")
    create_key.add_argument("--org")
    create_key.add_argument("--role", choices=("admin", "member"), default="member")
    create_key.add_argument("--name", default="")
    create_key.add_argument("--user")
    _limit_options(create_key)
    list_keys = keys.add_parser("list")
    list_keys.add_argument("--org")
    revoke = keys.add_parser("revoke")
    revoke.add_argument("key_id")

    requests = areas.add_parser("requests").add_subparsers(dest="action", required=True)
    read = requests.add_parser("get", help="one logged request by its x-request-id")
    read.add_argument("request_id")
    listed = requests.add_parser("list", help="the latest logged requests, newest first")
    _filters(listed)
    listed.add_argument("--until", help="ISO 8601 date or time; a date means up to the end of that day")
    listed.add_argument("--key", help="only this key's requests (its id)")
    listed.add_argument("--model")
    listed.add_argument("--status", help="a status code, 2xx, 4xx, 5xx or error (any status >= 400)")
    listed.add_argument("--finish-reason", dest="finish_reason")
    listed.add_argument("--verdict", help="a guardrail verdict on the input or the output, e.g. block")
    listed.add_argument("--route", help="e.g. /v1/chat/completions")
    listed.add_argument("--limit", type=int, help="rows per page")
    listed.add_argument("--cursor", help="the next_cursor of an earlier page")
    listed.add_argument("--all", action="store_true", help="follow next_cursor to the last page")

    usage = areas.add_parser("usage", help="requests, tokens and cost per key, model and route")
    _filters(usage)
    usage.add_argument("--org")
    return root


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO 8601 date or time (default: this month)")
    parser.add_argument("--end-user", dest="end_user", help="only the requests naming this end user")


# `requests list` option -> /v1/requests parameter.
REQUEST_FILTERS = {
    "since": "since",
    "until": "until",
    "end_user": "end_user",
    "key": "key_id",
    "model": "model",
    "status": "status",
    "finish_reason": "finish_reason",
    "verdict": "verdict",
    "route": "route",
    "limit": "limit",
    "cursor": "cursor",
}


def _query(args: argparse.Namespace, **names: str) -> dict[str, str]:
    """Query parameters from the options given (`names`: option -> parameter)."""
    values = {param: getattr(args, option, None) for option, param in names.items()}
    return {k: str(v) for k, v in values.items() if v is not None}


def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    """(method, path, JSON body, query) for the parsed command."""
    if args.area == "orgs":
        if args.action == "create":
            return (
                "POST",
                "/v1/admin/orgs",
                {"id": args.id, "name": args.name, "settings": _settings(args)},
                {},
            )
        return "GET", "/v1/admin/orgs", None, {}
    if args.area == "requests":
        if args.action == "list":
            return (
                "GET",
                "/v1/requests",
                None,
                _query(args, **REQUEST_FILTERS),
            )
        return "GET", f"/v1/requests/{quote(args.request_id, safe='')}", None, {}
    if args.area == "usage":
        return "GET", "/v1/usage", None, _query(args, since="since", end_user="end_user", org="org_id")
    if args.action == "create":
        body = {
            "org_id": args.org,
            "role": args.role,
            "name": args.name,
            "user_id": args.user,
            "settings": _settings(args),
        }
        return "POST", "/v1/admin/keys", {k: v for k, v in body.items() if v is not None}, {}
    if args.action == "list":
        return "GET", "/v1/admin/keys", None, {"org_id": args.org} if args.org else {}
    return "DELETE", f"/v1/admin/keys/{args.key_id}", None, {}


def _call(
    url: str, key: str, method: str, path: str, body: dict[str, Any] | None, query: dict[str, str]
) -> dict[str, Any] | None:
    """The answer's JSON; None (with the reason on stderr) when the call failed."""
    try:
        response = httpx.request(
            method,
            url + path,
            json=body,
            params=query,
            headers={"authorization": f"Bearer {key}"},
            timeout=TIMEOUT_SECONDS,
            trust_env=False,
        )
    except httpx.HTTPError as err:
        print(f"llmsuite: cannot reach {url}: {type(err).__name__}", file=sys.stderr)
        return None
    try:
        payload: dict[str, Any] = response.json()
    except ValueError:
        payload = {"error": {"message": response.text}}
    if response.is_error:
        print(f"llmsuite: {response.status_code}: {payload.get('error', {}).get('message')}", file=sys.stderr)
        return None
    return payload


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    key = os.environ.get("LLMSUITE_API_KEY", "")
    if not key:
        print("llmsuite: set LLMSUITE_API_KEY to an admin key", file=sys.stderr)
        return 2
    method, path, body, query = request(args)
    url = os.environ.get("LLMSUITE_URL", "http://127.0.0.1:8080").rstrip("/")
    payload = _call(url, key, method, path, body, query)
    if payload is None:
        return 1
    if getattr(args, "all", False):
        rows = list(payload["data"])
        # Keyset pages: each names the next, so rows written meanwhile never shift or repeat them.
        while payload.get("has_more") and payload.get("next_cursor"):
            payload = _call(url, key, method, path, body, {**query, "cursor": payload["next_cursor"]})
            if payload is None:
                return 1
            rows += payload["data"]
        payload = {"object": "list", "data": rows, "has_more": False, "next_cursor": None}
    print(json.dumps(payload, indent=2))
    if args.area == "keys" and args.action == "create":
        print("\nStore the key now: it is not shown again.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
