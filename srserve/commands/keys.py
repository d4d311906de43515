"""`srserve keys create|list|revoke`: API keys of a deployment, kept (hashed) in its Redis.

`create` prints the bearer token once: only sha256(id:secret) is stored, so a lost token cannot
be shown again (revoke it and create another). Keys are enforced by the API when
SRSERVE_AUTH_REQUIRED=true; when keys are optional, a request that sends one owns its jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keys", help="create, list or revoke API keys (stored hashed in Redis)")
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="create a key and print its token (shown once)")
    create.add_argument("name", help="who or what the key is for (shown by `list`)")
    create.add_argument("--rate", type=float, default=None, help="requests/s for this key (default: service's)")
    create.add_argument("--burst", type=int, default=None, help="token bucket size (default: service's)")
    create.add_argument("--quota", type=int, default=None, help="jobs per UTC day, 0 = unlimited (default: service's)")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    create.set_defaults(handler=_create)

    listing = sub.add_parser("list", help="list keys (ids, names, status; never secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)

    revoke = sub.add_parser("revoke", help="revoke a key: it authenticates nothing from now on")
    revoke.add_argument("key_id", help="the key's id (12 hex digits, from `list`)")
    revoke.set_defaults(handler=_revoke)


def _store() -> Any:
    import redis

    from service.auth import KeyStore
    from service.settings import get_settings

    return KeyStore(redis.Redis.from_url(get_settings().effective_redis_url, socket_connect_timeout=5))


def _row(key: Any) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "status": "active" if key.active else "revoked",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.created_at)),
        "rate_limit_per_s": key.rate_limit_per_s,
        "rate_limit_burst": key.rate_limit_burst,
        "daily_job_quota": key.daily_job_quota,
    }


def _create(args: argparse.Namespace) -> int:
    key, token = _store().create(
        args.name, rate_limit_per_s=args.rate, rate_limit_burst=args.burst, daily_job_quota=args.quota
    )
    if args.json:
        print(json.dumps({**_row(key), "token": token}))
    else:
        print(f"created key {key.key_id} ({key.name}); its token, shown only now:\n{token}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = [_row(k) for k in _store().list()]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':<14}{'status':<9}{'created':<22}{'rate/s':>8}{'quota':>8}  name")
    for r in rows:
        rate = "-" if r["rate_limit_per_s"] is None else f"{r['rate_limit_per_s']:g}"
        quota = "-" if r["daily_job_quota"] is None else str(r["daily_job_quota"])
        print(f"{r['id']:<14}{r['status']:<9}{r['created_at']:<22}{rate:>8}{quota:>8}  {r['name']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not _store().revoke(args.key_id):
        print(f"no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked key {args.key_id}")
    return 0
