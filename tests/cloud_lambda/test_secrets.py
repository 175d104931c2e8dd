"""The Redis AUTH token in VS_REDIS_URL never shows: not in the settings' repr or dumps, a settings error,
a log line, an API response or a search-handler result, while Redis is up or down."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from cloud_lambda.api import handler as api
from cloud_lambda.logs import get_logger
from cloud_lambda.matches import MatchStoreUnavailable
from cloud_lambda.search import handler as search_handler
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings, SettingsError
from model.logs import JsonLinesFormatter
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import TinyCatalog, feature_event

SECRET = "s3cr3t-AUTH-t0ken-9f2c"


def api_get(path: str) -> dict[str, object]:
    event = {"version": "2.0", "rawPath": path, "requestContext": {"http": {"method": "GET"}}, "headers": {}}
    return api.lambda_handler(event, None)


def test_settings_never_show_the_redis_token() -> None:
    settings = CloudSettings.build(index_dir="/x", redis_url=f"rediss://:{SECRET}@cache:6379/0")
    assert settings.redis_url.get_secret_value() == f"rediss://:{SECRET}@cache:6379/0"
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert SECRET not in text
    # Errors name the variable and why, and neither the bad value nor the other values.
    for values in (
        {"redis_url": f"http://:{SECRET}@cache:6379", "index_dir": "/x"},
        {"redis_url": f"redis://:{SECRET}@cache:6379", "index_dir": "/x", "top_k": 0},
    ):
        with pytest.raises(SettingsError) as caught:
            CloudSettings.build(**values)
        assert "VS_" in str(caught.value)
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_token_absent_from_logs_and_responses_with_redis_up_and_down(
    tiny_catalog: TinyCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's own JSON-lines logger, read back through a handler of the same format.
    logger, stream = get_logger("cloud_lambda"), io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(JsonLinesFormatter())
    logger.addHandler(capture)
    server = RedisProcess(workdir=tmp_path / "redis", password=SECRET).start()
    monkeypatch.setenv("VS_INDEX_DIR", str(tiny_catalog.folder))
    monkeypatch.setenv("VS_REDIS_URL", server.url)
    monkeypatch.setenv("VS_REDIS_TIMEOUT_S", "0.5")
    search_handler.reset_service()
    api.set_service(None)
    outputs: list[str] = []
    try:
        # Up: the token authenticates (AUTH is really required by this server) ...
        result = search_handler.lambda_handler(feature_event(tiny_catalog.vectors[2], tiny_catalog.model_id), None)
        assert result["status"] == "accepted"
        service = search_handler.get_service()
        assert isinstance(service, SearchService)
        api.set_service(service)
        for path in ("/api/health", "/api/devices", "/api/devices/cam-01/matches"):
            response = api_get(path)
            assert response["statusCode"] == 200
            outputs.append(json.dumps(response))
        # ... down: every failure path logs and answers without it.
        server.stop()
        for path in ("/api/health", "/api/devices", "/api/devices/cam-01/matches/latest"):
            response = api_get(path)
            assert response["statusCode"] == 503
            outputs.append(json.dumps(response))
        # The search Lambda raises so that Lambda retries the event; the error's text is what CloudWatch shows.
        with pytest.raises(MatchStoreUnavailable) as caught:
            search_handler.lambda_handler(feature_event(tiny_catalog.vectors[3], tiny_catalog.model_id, seq=2), None)
        outputs.append(str(caught.value) + repr(caught.value.__cause__))
        outputs.append(repr(service.settings) + repr(service.matches.client))
    finally:
        api.set_service(None)
        search_handler.reset_service()
        server.stop()
        logger.removeHandler(capture)
    logs = stream.getvalue()
    assert (
        '"event":"api_unavailable"' in logs and '"event":"feature_failed"' in logs
    )  # the failures above were logged (JSON lines) ...
    for text in [logs, *outputs]:
        assert SECRET not in text  # ... and nothing carries the token
