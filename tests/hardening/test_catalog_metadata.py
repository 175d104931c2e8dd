"""Catalog metadata is validated when it is read for indexing.

Every row: an id that is a string or an integer (``1.5`` says so, instead of "row has no 'id'"), printable
and at most 256 characters; finite numbers; a title, an image URL and the whole row within their budgets,
so no record can grow a match past IoT Core's 128 KB. A bad file stops the run before any image is
featurized, with one line per problem naming the file, the line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_lambda.catalog.items import MAX_ROW_BYTES, MAX_TITLE_CHARS, ItemsError, read_item_rows
from tests.hardening.conftest import count_case

BAD_ROWS = [
    ('{"id": 1.5}', "'id' must be a string or an integer, got the number 1.5"),
    ('{"id": true}', "'id' must be a string or an integer, got true"),
    ('{"id": null}', "row has no 'id'"),
    ('{"title": "x"}', "row has no 'id'"),
    ('{"id": ["a"]}', "'id' must be a string or an integer, got a list"),
    ('{"id": "   "}', "'id' is empty"),
    ('{"id": "a\\nb"}', "'id' holds a control character"),
    ('{"id": "' + "x" * 257 + '"}', "'id' is 257 characters, over 256"),
    ('{"id": "a", "price": NaN}', "non-JSON constant NaN"),
    ('{"id": "a", "price": Infinity}', "non-JSON constant Infinity"),
    ('{"id": "a", "price": 1e999}', "overflows"),
    ('{"id": "a", "x": ' + "[" * 40 + "]" * 40 + "}", "nests deeper"),
    ('{"id": "a", "title": 5}', "'title' must be a string"),
    ('{"id": "a", "title": "' + "t" * (MAX_TITLE_CHARS + 1) + '"}', f"'title' is {MAX_TITLE_CHARS + 1} characters"),
    ('{"id": "a", "image_url": "' + "u" * 2049 + '"}', "'image_url' is 2049 characters"),
    ('{"id": "a", "notes": "' + "n" * MAX_ROW_BYTES + '"}', f"over the {MAX_ROW_BYTES:,}-byte limit"),
    ("[1, 2]", "each row must be an object"),
    ('{"id": "a"', "not JSON"),
]


@pytest.mark.parametrize(("line", "message"), BAD_ROWS)
def test_a_bad_jsonl_row_is_named_precisely(tmp_path: Path, line: str, message: str) -> None:
    count_case("catalog: bad metadata row")
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "fine"}\n' + line + "\n")
    with pytest.raises(ItemsError) as refused:
        read_item_rows(path)
    text = str(refused.value)
    assert f"{path}:2:" in text and message in text, text
    assert "\n" not in text


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1.5}\n{"id": "ok"}\n{"id": "b", "p": NaN}\n')
    with pytest.raises(ItemsError) as refused:
        read_item_rows(path)
    assert f"{path}:1:" in str(refused.value) and f"{path}:3:" in str(refused.value)


def test_csv_rows_meet_the_same_budgets(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title\nok,Fine\n" + "x" * 300 + ",Too long id\nb," + "t" * (MAX_TITLE_CHARS + 1) + "\n")
    with pytest.raises(ItemsError) as refused:
        read_item_rows(path)
    assert f"{path}:3: 'id' is 300 characters" in str(refused.value)
    assert f"{path}:4: 'title' is {MAX_TITLE_CHARS + 1} characters" in str(refused.value)


def test_valid_rows_are_kept_with_integer_ids_as_text(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [{"id": 7, "title": "Mug", "price": 9.5, "tags": ["a"]}, {"id": " sku-1 ", "image_url": "https://x/1.jpg"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [r["id"] for r in read_item_rows(path)] == ["7", "sku-1"]


def test_catalog_index_stops_before_featurizing_with_the_line(tmp_path: Path, tiny_model: Path) -> None:
    import cv2
    import numpy as np

    from model.hub import main

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((96, 96, 3), 127, np.uint8))
    meta = tmp_path / "items.jsonl"
    meta.write_text('{"id": "a", "price": NaN}\n')
    out = tmp_path / "index"
    code = main(
        ["catalog", "index", str(images), "--out", str(out), "--model", str(tiny_model), "--metadata", str(meta)]
    )
    assert code != 0 and not out.exists()
    assert not (tmp_path / "index.work" / "parts").exists() or not any((tmp_path / "index.work" / "parts").iterdir())


def test_the_default_image_url_shows_no_server_path(tmp_path: Path, tiny_model: Path) -> None:
    """Without metadata, items once pointed at file:///home/.../catalog/x.png."""
    import cv2
    import numpy as np

    from cloud_lambda.catalog.indexer import IndexOptions, run_index
    from cloud_lambda.metadata.sqlite_store import SqliteStore

    images = tmp_path / "secret-home" / "images"
    (images / "sub dir").mkdir(parents=True)
    cv2.imwrite(str(images / "sub dir" / "a b.png"), np.full((96, 96, 3), 90, np.uint8))
    out = tmp_path / "index"
    run_index(IndexOptions(source=str(images), out=out, model=tiny_model, workers=0, progress=False))
    store = SqliteStore(out / "metadata.sqlite", create=False)
    try:
        (record,) = store.get_many(["sub dir/a b"]).values()
    finally:
        store.close()
    assert record.image_url == "/catalog/sub%20dir/a%20b.png"
    assert "secret-home" not in record.image_url and "file:" not in record.image_url
