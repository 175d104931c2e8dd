"""Settings from VS_* variables, the Lambda entry points built from the environment, the search-image CLI."""

from __future__ import annotations

import json

import cv2
import pytest

from cloud_lambda.search import handler as search_handler
from cloud_lambda.settings import CloudSettings, SettingsError
from model.hub import main
from tests.cloud_lambda.conftest import TinyCatalog, feature_event


def test_settings_from_env_and_errors_name_the_variable():
    settings = CloudSettings.from_env({"VS_INDEX_DIR": "/x", "VS_TOP_K": "7", "VS_MATCH_PUBLISH": "mqtt://h:1883"})
    assert settings.top_k == 7 and settings.match_list_cap == 100 and settings.metadata == ""
    for env, key in [
        ({}, "VS_INDEX_DIR"),
        ({"VS_INDEX_DIR": "/x", "VS_TOP_K": "0"}, "VS_TOP_K"),
        ({"VS_INDEX_DIR": "/x", "VS_MATCH_PUBLISH": "kafka://x"}, "VS_MATCH_PUBLISH"),
        ({"VS_INDEX_DIR": "/x", "VS_METADATA": "mysql://x"}, "VS_METADATA"),
        ({"VS_INDEX_DIR": "/x", "VS_REDIS_URL": "http://x"}, "VS_REDIS_URL"),
        ({"VS_INDEX_DIR": "/x", "VS_MIN_SCORE": "high"}, "VS_MIN_SCORE"),
    ]:
        with pytest.raises(SettingsError, match=key):
            CloudSettings.from_env(env)


def test_search_lambda_handler_from_environment(monkeypatch, tiny_catalog: TinyCatalog, redis_server):
    monkeypatch.setenv("VS_INDEX_DIR", str(tiny_catalog.folder))
    monkeypatch.setenv("VS_REDIS_URL", redis_server.url)
    search_handler.reset_service()
    try:
        result = search_handler.lambda_handler(feature_event(tiny_catalog.vectors[5], tiny_catalog.model_id), None)
        assert result["status"] == "accepted" and result["top"] == "item-005"
        status = {"v": 1, "device_id": "cam-01", "state": "offline", "topic_device": "cam-01", "topic_kind": "status"}
        assert search_handler.lambda_handler(status, None)["status"] == "accepted"
        # Loaded once per container: the same service answers the next event.
        assert search_handler.get_service() is search_handler.get_service()
    finally:
        search_handler.reset_service()


def test_search_image_cli(tmp_path, tiny_catalog: TinyCatalog, tiny_model, capsys):
    photo = tmp_path / "query.png"
    cv2.imwrite(str(photo), tiny_catalog.images[21])
    code = main(
        [
            "search-image",
            str(photo),
            "--index",
            str(tiny_catalog.folder),
            "--model",
            str(tiny_model),
            "-k",
            "3",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matches"][0]["id"] == "item-021" and len(result["matches"]) == 3
    (tmp_path / "fake.jpg").write_text("not an image")
    assert (
        main(
            [
                "search-image",
                str(tmp_path / "fake.jpg"),
                "--index",
                str(tiny_catalog.folder),
                "--model",
                str(tiny_model),
            ]
        )
        == 1
    )
    assert "not_image" in capsys.readouterr().err
    assert main(["search-image", str(photo), "--index", str(tmp_path / "none"), "--model", str(tiny_model)]) == 2
