"""``visual-search catalog indexes list|retire``: the index of each model id under an index root.

``retire MODEL_ID`` refuses the last index (the search would then refuse every message) and one that
cameras still use: devices seen within ``--window-h`` whose latest match record carries that model id
(:mod:`cloud_lambda.catalog.usage`, read from the match Redis: ``--redis-url`` or ``VS_REDIS_URL``). Without
a Redis to ask it refuses too, unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

DEFAULT_WINDOW_H = 24.0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="indexes_command", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser("list", help="model ids with an index under ROOT, and how many cameras use each")
    listing.add_argument("root", help="index root: local folder or s3://bucket/prefix")
    _usage_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)

    retire = sub.add_parser("retire", help="remove the index of MODEL_ID (refused while cameras still use it)")
    retire.add_argument("root", help="index root: local folder or s3://bucket/prefix")
    retire.add_argument("model_id", metavar="MODEL_ID")
    _usage_options(retire)
    retire.add_argument(
        "--force", action="store_true", help="retire even if cameras used it within the window (or no Redis to ask)"
    )
    retire.set_defaults(handler=_retire)


def _usage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("VS_REDIS_URL"),
        help="the match store, to count cameras per model (default: $VS_REDIS_URL)",
    )
    parser.add_argument(
        "--window-h", type=float, default=DEFAULT_WINDOW_H, help="a camera seen within this many hours counts"
    )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _usage(args: argparse.Namespace) -> Any:
    if not args.redis_url:
        return None
    from cloud_lambda.catalog.usage import model_usage
    from cloud_lambda.matches import MatchStore, connect

    return model_usage(MatchStore(connect(args.redis_url)), args.window_h * 3600)


def _list(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.layout import CatalogError
    from cloud_lambda.catalog.roots import open_root
    from cloud_lambda.matches import MatchStoreUnavailable

    try:
        rows = open_root(args.root).describe()
        usage = _usage(args)
    except (CatalogError, MatchStoreUnavailable, OSError) as exc:
        return _fail(str(exc))
    for row in rows:
        row["cameras"] = usage.devices[row["model_id"]] if usage is not None else None
    if args.json:
        print(json.dumps({"root": args.root, "window_h": args.window_h, "indexes": rows}, indent=2))
        return 0
    if not rows:
        print(f"{args.root}: no index")
        return 0
    print(f"{'model id':<40} {'items':>10} {'kind':<10} {'created':<21} cameras (last {args.window_h:g} h)")
    for row in rows:
        cameras = "?" if row["cameras"] is None else str(row["cameras"])
        print(f"{row['model_id']:<40} {row['items']:>10,} {row['index']:<10} {row['created_at']:<21} {cameras}")
    if usage is None:
        print("(cameras: pass --redis-url or set VS_REDIS_URL to count them)")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.layout import CatalogError
    from cloud_lambda.catalog.roots import open_root
    from cloud_lambda.matches import MatchStoreUnavailable

    try:
        root = open_root(args.root)
        ids = root.model_ids()
        if args.model_id not in ids:
            return _fail(f"{args.root} has no index for model {args.model_id!r}; it has: {', '.join(ids) or 'none'}")
        if len(ids) == 1:
            return _fail(
                f"{args.model_id} is the only index under {args.root}: retiring it would refuse every camera."
                " Index the catalog with the next model first (catalog index --root)"
            )
        usage = _usage(args)
        if not args.force:
            refusal = _in_use(args, usage)
            if refusal:
                return _fail(refusal)
        root.retire(args.model_id)
    except (CatalogError, MatchStoreUnavailable, OSError) as exc:
        return _fail(str(exc))
    print(json.dumps({"retired": args.model_id, "root": args.root, "remaining": root.model_ids()}))
    return 0


def _in_use(args: argparse.Namespace, usage: Any) -> str | None:
    if usage is None:
        return (
            f"cannot tell whether cameras still use {args.model_id}: pass --redis-url (or set VS_REDIS_URL) so their"
            " latest match records can be read, or --force"
        )
    if usage.in_use(args.model_id):
        names = ", ".join(usage.examples[args.model_id])
        return (
            f"{usage.devices[args.model_id]} camera(s) seen in the last {args.window_h:g} h still use {args.model_id}"
            f" (e.g. {names}): move them to another model first, or --force"
        )
    return None
