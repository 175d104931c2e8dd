"""``visual-search catalog``: index (one machine or one shard), merge shards, adapt, load metadata, info, and the
indexes of every model id under an index root (list, retire)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="catalog_command", metavar="ACTION")
    sub.required = True
    _add_index(sub.add_parser("index", help="validate, featurize and index a folder or s3:// prefix of images"))
    _add_merge(sub.add_parser("merge", help="combine shard folders into one catalog"))
    _add_adapt(
        sub.add_parser(
            "adapt",
            help="learn a projection head from the catalog's own images and apply it to the index"
            " (docs/match-quality.md)",
        )
    )
    load = sub.add_parser("load-metadata", help="copy a catalog's metadata.sqlite into DynamoDB")
    load.add_argument("folder", type=Path)
    load.add_argument("--to", required=True, help="dynamodb://table")
    load.set_defaults(handler=_load_metadata)

    info = sub.add_parser("info", help="print a catalog's manifest and summary")
    info.add_argument("folder", type=Path)
    info.set_defaults(handler=_info)

    from cloud_lambda.catalog import indexes_cli

    indexes_cli.register(sub.add_parser("indexes", help="list or retire the indexes of each model id under a root"))


def _add_index(idx: argparse.ArgumentParser) -> None:
    idx.add_argument("source", help="local folder or s3://bucket/prefix of catalog images")
    where = idx.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="index folder to write (with --shard: the shard's)")
    where.add_argument(
        "--root",
        type=Path,
        help="index root holding one folder per model id: writes ROOT/<model id>/ beside the live indexes"
        " (atomically), so a new model is indexed before cameras move to it (docs/scale.md)",
    )
    idx.add_argument("--model", required=True, help="ONNX featurizer (with its .json sidecar); path or s3://")
    idx.add_argument(
        "--metadata",
        help="items .jsonl or .csv (id, title, image_url, file, extras); path or s3://bucket/key; empty = none",
    )
    _index_kind_options(idx)
    idx.add_argument(
        "--catalog-views",
        default="auto",
        help="views of each image: auto (default: the whole image and the model's centre crop, averaged into one"
        " row; one view for a model without a crop), 1, or a comma list of full, crop scales (0.7), grid=N, flip,"
        " mean; e.g. full,0.7,0.5 (3 rows per item, folded back at search) or full,0.6,mean (docs/match-quality.md)",
    )
    idx.add_argument("--batch-size", type=int, default=32, help="view images per featurizer call")
    idx.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="decode processes (0: in-process)"
    )
    idx.add_argument("--threads", type=int, default=None, help="featurizer threads")
    idx.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let idle onnxruntime threads busy-wait between batches (default: off when decode workers share the"
        " cores, i.e. --workers > 0; on otherwise)",
    )
    idx.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino")
    idx.add_argument("--shard", help="i/n: process only shard i of n (0-based); AWS Batch: AWS_BATCH_JOB_ARRAY_INDEX")
    idx.add_argument("--shard-count", type=int, help="n when the shard index comes from AWS_BATCH_JOB_ARRAY_INDEX")
    idx.add_argument(
        "--work-dir",
        type=Path,
        help="resume journal and part files (default: OUT.work; with --root: ROOT/.work/<model id>)",
    )
    idx.add_argument("--image-base-url", help="image_url = BASE/<file> for items without one in --metadata")
    idx.add_argument(
        "--upload",
        help="s3://bucket/prefix to upload the finished folder to (with --root: the S3 root; the folder"
        " goes to PREFIX/<model id>/, manifest last)",
    )
    idx.add_argument("--no-progress", action="store_true", help="no progress bar")
    idx.set_defaults(handler=_index)


def _add_merge(merge: argparse.ArgumentParser) -> None:
    merge.add_argument(
        "shards", nargs="+", help="shard folders written by `index --shard`, or an s3:// prefix holding shard-*/"
    )
    merge_where = merge.add_mutually_exclusive_group(required=True)
    merge_where.add_argument("--out", type=Path, help="folder to write the merged index to")
    merge_where.add_argument("--root", type=Path, help="index root: writes ROOT/<the shards' model id>/")
    _index_kind_options(merge)
    merge.add_argument("--allow-partial", action="store_true", help="merge even if some shards are missing")
    merge.add_argument(
        "--upload", help="s3://bucket/prefix to upload the merged folder to (with --root: the S3 root, see index)"
    )
    merge.set_defaults(handler=_merge)


def _add_adapt(adapt: argparse.ArgumentParser) -> None:
    adapt.add_argument(
        "index_dir",
        type=Path,
        metavar="INDEX",
        help="catalog index folder written by `catalog index`, or an index root (then ROOT/<the model's id>/)",
    )
    adapt.add_argument("--source", required=True, help="the folder or s3:// prefix the index was built from")
    adapt.add_argument("--model", required=True, help="the index's ONNX featurizer (the devices' model); path or s3://")
    adapt.add_argument("--metadata", type=Path, help="the items file given to `catalog index`, if any")
    adapt.add_argument("--views-per-item", type=int, default=60, help="training views made from each image")
    adapt.add_argument("--epochs", type=int, default=None, help="head training epochs (default: 30)")
    adapt.add_argument("--dim", type=int, default=None, help="projected dimension (default: 256)")
    adapt.add_argument(
        "--work-dir",
        type=Path,
        help="cached training vectors and checkpoints (default: INDEX.adapt-work; for a root: ROOT/.work/<model id>.adapt)",
    )
    adapt.add_argument("--restart", action="store_true", help="discard the work dir's cache and checkpoint")
    adapt.add_argument(
        "--remove", action="store_true", help="remove the index's head instead (back to the model's vectors)"
    )
    adapt.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino")
    adapt.add_argument("--threads", type=int, default=None, help="featurizer threads")
    adapt.add_argument("--no-progress", action="store_true", help="no progress bars")
    adapt.set_defaults(handler=_adapt)


def _index_kind_options(parser: argparse.ArgumentParser) -> None:
    from cloud_lambda.index import kinds
    from cloud_lambda.index.choice import AUTO, describe_bands

    parser.add_argument(
        "--index",
        dest="index_kind",
        choices=[AUTO, *kinds()],
        default=AUTO,
        help=f"index kind (docs/scale.md); {describe_bands()}",
    )
    parser.add_argument(
        "--index-param",
        action="append",
        default=[],
        metavar="KEY=N",
        help="a parameter of the named --index kind, repeatable: M, ef_construction, ef_search (hnsw*), pca"
        " (hnsw-sq8, hnsw-fp16, ivfpq), nlist, pq_m, nprobe, rerank (ivfpq)",
    )
    parser.add_argument("--hnsw-m", type=int, help="HNSW graph degree M (= --index-param M=N)")
    parser.add_argument("--ef-construction", type=int, help="= --index-param ef_construction=N")
    parser.add_argument("--ef-search", type=int, help="= --index-param ef_search=N")


def _index_params(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given for ``--index``; a ValueError naming the option when they do not fit."""
    from cloud_lambda.index import VectorIndexError, create_index
    from cloud_lambda.index.choice import AUTO

    params: dict[str, Any] = {}
    for text in args.index_param:
        key, sep, value = text.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--index-param {text!r}: expected KEY=INTEGER")
        params[key.strip()] = int(value)
    for key, value in (("M", args.hnsw_m), ("ef_construction", args.ef_construction), ("ef_search", args.ef_search)):
        if value is not None:
            params[key] = value
    if params and args.index_kind == AUTO:
        raise ValueError("index parameters need the kind they belong to: name it with --index (e.g. --index hnsw)")
    if params:
        try:
            create_index(args.index_kind, 8, **params)  # checks names and ranges before any featurizing
        except VectorIndexError as exc:
            raise ValueError(f"--index {args.index_kind}: {exc}") from None
    return params


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _index(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.indexer import IndexingError, IndexOptions, Shard, run_index
    from model.retrieval.catalog_views import parse_views

    try:
        views = None if args.catalog_views.strip().lower() == "auto" else parse_views(args.catalog_views)
        shard = Shard.parse(args.shard) if args.shard else Shard.from_env(args.shard_count)
        params = _index_params(args)
        if args.root is not None and shard is not None:
            raise ValueError("--root writes a whole index: index shards with --out, then `catalog merge --root`")
        from cloud_lambda.catalog.sources import local_file, local_model
        from model.featurizer import Featurizer

        model = Path(local_model(str(args.model)))
        metadata = local_file(args.metadata) if args.metadata else None
        # The decode workers run on the same cores: spinning featurizer threads would take their time slices.
        spinning = args.spin if args.spin is not None else args.workers == 0
        featurizer = Featurizer(model, backend=args.backend, threads=args.threads, spinning=spinning)
        out, upload = _destination(args.out, args.root, args.upload, featurizer.model_id)
        if shard is not None and args.shard is None:
            # One command line for every array child: each writes (and uploads) its own shard folder.
            name = f"shard-{shard.index:05d}-of-{shard.count:05d}"
            out = out / name
            upload = f"{upload.rstrip('/')}/{name}" if upload else None
        options = IndexOptions(
            source=args.source,
            out=out,
            model=model,
            metadata=metadata,
            index_kind=args.index_kind,
            index_params=params,
            batch_size=args.batch_size,
            workers=args.workers,
            shard=shard,
            # In a root, the resume journal stays out of the listing (hidden), one per model id.
            work_dir=args.work_dir or (args.root / ".work" / featurizer.model_id if args.root else None),
            image_base_url=args.image_base_url,
            backend=args.backend,
            threads=args.threads,
            progress=not args.no_progress,
            views=views,
        )
        result = run_index(options, featurizer=featurizer)
    except (IndexingError, ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(str(exc))
    print(json.dumps(result.summary, indent=2))
    if upload:
        from cloud_lambda.catalog.sources import upload_folder

        upload_folder(out, upload)
    return 0


def _destination(out: Path | None, root: Path | None, upload: str | None, model_id: str) -> tuple[Path, str | None]:
    """(local folder, upload URI): ``--out`` as given, or ``ROOT/<model id>`` (and ``UPLOAD/<model id>``)."""
    if root is None:
        assert out is not None  # argparse: one of --out / --root is required
        return out, upload
    from cloud_lambda.catalog.roots import LocalRoot

    local = Path(LocalRoot(root).location(model_id))
    return local, f"{upload.rstrip('/')}/{model_id}" if upload else None


def _adapt(args: argparse.Namespace) -> int:
    import shutil

    from cloud_lambda.catalog.adapt import adapt_index, before_after_table
    from cloud_lambda.catalog.layout import CatalogError, apply_head
    from cloud_lambda.catalog.sources import local_model

    try:
        model = Path(local_model(str(args.model)))
        index_dir, work = _adapt_folders(args.index_dir, model, args.work_dir)
        if args.remove:
            apply_head(index_dir, None, None)
            print(f"{index_dir}: projection head removed; the index holds the model's vectors again")
            return 0
        from model.adapt.pipeline import AdaptSettings, with_head_settings

        settings = AdaptSettings(views_per_item=args.views_per_item)
        changes = {k: v for k, v in (("epochs", args.epochs), ("out_dim", args.dim)) if v is not None}
        settings = with_head_settings(settings, **changes) if changes else settings
        if args.restart:
            shutil.rmtree(work, ignore_errors=True)
        summary = adapt_index(
            index_dir,
            args.source,
            model,
            metadata=args.metadata,
            settings=settings,
            work_dir=work,
            backend=args.backend,
            threads=args.threads,
            progress=not args.no_progress,
        )
    except (CatalogError, ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(str(exc))
    print(json.dumps({k: v for k, v in summary.items() if k != "before_after"}, indent=2))
    print(before_after_table(summary))
    return 0


def _adapt_folders(index: Path, model: Path, work_dir: Path | None) -> tuple[Path, Path]:
    """(the index folder, the work dir): ``index`` itself, or for an index root its folder for this model's id."""
    from cloud_lambda.catalog.layout import MANIFEST
    from model.sidecar import read_sidecar

    if (index / MANIFEST).exists():
        return index, work_dir or Path(str(index).rstrip("/") + ".adapt-work")
    model_id = read_sidecar(model).model_id
    if not (index / model_id / MANIFEST).exists():
        raise FileNotFoundError(f"{index} holds no index: neither {index / MANIFEST} nor {index / model_id / MANIFEST}")
    # Beside the indexer's journals (ROOT/.work/), never a folder the search would take for another model's index.
    return index / model_id, work_dir or index / ".work" / f"{model_id}.adapt"


def _merge(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.layout import CatalogError, read_manifest
    from cloud_lambda.catalog.merge import merge_catalogs

    try:
        params = _index_params(args)
        staging = args.out or args.root / ".merge"
        shards = _shard_folders(args.shards, staging)
        model_id = read_manifest(shards[0]).model_id if shards else ""
        out, upload = _destination(args.out, args.root, args.upload, model_id)
        summary = merge_catalogs(shards, out, args.index_kind, params or None, require_complete=not args.allow_partial)
    except (CatalogError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(json.dumps(summary, indent=2))
    if upload:
        from cloud_lambda.catalog.sources import upload_folder

        upload_folder(out, upload)
    return 0


def _load_metadata(args: argparse.Namespace) -> int:
    from cloud_lambda.metadata.base import MetadataError, open_metadata_store
    from cloud_lambda.metadata.sqlite_store import SqliteStore

    if not args.to.startswith("dynamodb://"):
        return _fail("--to must be dynamodb://table")
    try:
        source = SqliteStore(args.folder / "metadata.sqlite", create=False)
        written = open_metadata_store(args.to).put_many(source.iter_all())
    except MetadataError as exc:
        return _fail(str(exc))
    print(json.dumps({"written": written, "to": args.to}))
    return 0


def _info(args: argparse.Namespace) -> int:
    from cloud_lambda.catalog.layout import SUMMARY, CatalogError, read_manifest

    try:
        manifest = read_manifest(args.folder)
    except CatalogError as exc:
        return _fail(str(exc))
    summary_path = args.folder / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    print(json.dumps({"manifest": manifest.model_dump(mode="json"), "summary": summary}, indent=2))
    return 0


def _shard_folders(specs: list[str], out: Path) -> list[Path]:
    """Local shard folders; s3:// prefixes (a shard, or a parent of shard-*/) are downloaded beside ``out``."""
    from cloud_lambda.catalog.sources import download_prefix, shard_prefixes

    folders: list[Path] = []
    for spec in specs:
        if not spec.startswith("s3://"):
            folders.append(Path(spec))
            continue
        for uri in shard_prefixes(spec) or [spec]:
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            folders.append(download_prefix(uri, out.with_name(f".{out.name}.{name}")))
    return folders
