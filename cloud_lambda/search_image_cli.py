"""``visual-search search-image PHOTO --index DIR``: the photo search, without a camera or a web browser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo", type=Path, help="a JPEG or PNG file (same rules as catalog images)")
    parser.add_argument("--index", required=True, help="catalog index folder or index root (or s3://bucket/prefix)")
    from_env = os.environ.get("VS_PHOTO_MODEL")
    # Required in the usage line too, unless the environment already names it (as in the Lambda image).
    parser.add_argument(
        "--model",
        required=not from_env,
        default=from_env,
        help="the ONNX featurizer the catalog was indexed with (default: $VS_PHOTO_MODEL)",
    )
    parser.add_argument("-k", "--top-k", type=int, default=5, help="matches to show")
    parser.add_argument("--min-score", type=float, default=0.0, help="hide matches below this cosine score")
    parser.add_argument("--json", action="store_true", help="print the JSON result instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.layout import CatalogError
    from cloud_lambda.search.service import PhotoModelUnavailable, SearchService
    from cloud_lambda.settings import CloudSettings, SettingsError
    from model.image_rules import ImageRejected

    try:
        data = args.photo.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.photo}: {exc}", file=sys.stderr)
        return 2
    try:
        settings = CloudSettings.build(
            index_dir=str(args.index), top_k=args.top_k, min_score=args.min_score, photo_model=args.model
        )
        if not settings.photo_model:
            print("error: --model is required (the ONNX featurizer the catalog was indexed with)", file=sys.stderr)
            return 2
        # The Redis client connects lazily and a photo search never writes, so no Redis is needed here. A root
        # of several model ids works too: the photo model picks its index, as in the API.
        service = SearchService(settings)
        result = service.search_photo(data, args.top_k)
    except ImageRejected as exc:
        print(f"error: image rejected ({exc.reason}): {exc}", file=sys.stderr)
        return 1
    except (CatalogError, SettingsError, PhotoModelUnavailable, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model {result['model_id']}  timing_ms {result['timing_ms']}")
    for rank, match in enumerate(result["matches"], start=1):
        print(f"{rank:>2}. {match['score']:.3f}  {match['id']}  {match.get('title', '')}")
    if not result["matches"]:
        print("no match above the minimum score")
    return 0
