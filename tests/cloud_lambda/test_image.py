"""The cloud image as it ships: installed non-editable the way its Dockerfile does, both handlers called the way
Lambda calls them.

``tests/cloud_lambda/image.py`` replays the Dockerfile (COPY what it copies, its ``pip install``, the sources
removed) into a fresh venv; the container then runs its real ENTRYPOINT — ``python -m awslambdaric <handler>``
with the handler named in the template's ``ImageConfig.Command`` — and awslambdaric's ``_get_handler``
imports "module.function" as it does in Lambda (``awslambdaric/bootstrap.py`` in
aws/aws-lambda-python-runtime-interface-client). Events come through a stand-in Lambda service
(``tests/cloud_lambda/lambda_runtime.py``): IoT rule events for features and status, API Gateway HTTP API
payload 2.0 events for the API; matches go to a real redis-server. Cold-start and per-invocation times are
written to ``test-artifacts/cloud-image-timings.json``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import cv2
import pytest
from cfnlint.decode import decode_str
from moto import mock_aws

from cloud_lambda.matches import MatchStore, connect
from cloud_lambda.search.replay import Replayer
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import TinyCatalog, feature_event
from tests.cloud_lambda.image import ImageInstall, install_image, start_container, stop_container, where_imported
from tests.cloud_lambda.lambda_runtime import Invocation, RuntimeApi
from tests.conftest import ARTIFACTS, REPO_ROOT

pytestmark = pytest.mark.slow

TEMPLATE = decode_str((REPO_ROOT / "cloud_lambda" / "template.yaml").read_text())[0]
RESOURCES = TEMPLATE["Resources"]
SEARCH_HANDLER = RESOURCES["SearchFunction"]["Properties"]["ImageConfig"]["Command"][0]
API_HANDLER = RESOURCES["ApiFunction"]["Properties"]["ImageConfig"]["Command"][0]
RETRIES = RESOURCES["SearchFunction"]["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"]
TIMINGS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageInstall]:
    installed = install_image(tmp_path_factory.mktemp("image-root"))
    TIMINGS["install_s"] = round(installed.install_s, 1)
    yield installed
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cloud-image-timings.json").write_text(json.dumps(TIMINGS, indent=2))


@contextmanager
def container(image: ImageInstall, handler: str, env: dict[str, str], name: str) -> Iterator[RuntimeApi]:
    """One Lambda execution environment for ``handler``; ``name`` labels its timings."""
    api = RuntimeApi()
    started = time.perf_counter()
    process = start_container(image, [handler], image.root / f"{name}.log", AWS_LAMBDA_RUNTIME_API=api.address, **env)
    try:
        deadline = time.monotonic() + 120
        while api.first_poll_at is None and api.init_error is None and process.poll() is None:
            assert time.monotonic() < deadline, "the runtime never asked for an event"
            time.sleep(0.05)
        log = (image.root / f"{name}.log").read_text(errors="replace")
        assert api.init_error is None and process.poll() is None, f"init failed: {api.init_error}\n{log[-3000:]}"
        assert api.first_poll_at is not None
        TIMINGS[f"{name}_init_ms"] = round((api.first_poll_at - started) * 1000)
        yield api
    finally:
        stop_container(process)
        api.close()


def lambda_env(catalog: TinyCatalog, redis: RedisProcess, model: Path) -> dict[str, str]:
    """The function's configuration as the template sets it (VS_*), plus what Lambda itself sets."""
    return {
        "VS_INDEX_DIR": str(catalog.folder),
        "VS_REDIS_URL": redis.url,
        "VS_MATCH_PUBLISH": "none",
        "VS_PHOTO_MODEL": str(model),
        "VS_REDIS_TIMEOUT_S": "1",
        "VS_TOP_K": "3",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": "visual-search-search",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    }


def status_event(device_id: str) -> dict[str, Any]:
    """What the status rule delivers: the device's status message plus topic(2) and 'status' AS topic_kind."""
    return {
        "v": 1,
        "device_id": device_id,
        "ts": time.time(),
        "state": "online",
        "fps": 4.9,
        "backend": "openvino",
        "device": "CPU",
        "model_id": "m",
        "featurize_ms": {"p50": 3.0, "p95": 3.4},
        "frames": {"captured": 10, "published": 5, "skipped": 5, "dropped": 0},
        "queue_depth": 0,
        "source": {"kind": "camera"},
        "last_error": None,
        "topic_device": device_id,
        "topic_kind": "status",
    }


def http_event(method: str, path: str, query: str = "", body: bytes | None = None, content_type: str = "") -> dict:
    """An API Gateway HTTP API payload format 2.0 event for the template's ``ANY /{proxy+}`` route
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html)."""
    host = "abc123defg.execute-api.eu-west-1.amazonaws.com"
    headers = {"accept": "*/*", "host": host, "user-agent": "curl/8.5.0", "x-forwarded-proto": "https"}
    if content_type:
        headers["content-type"] = content_type
    if body is not None:
        headers["content-length"] = str(len(body))
    route = "GET /" if path == "/" else "ANY /{proxy+}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123defg",
            "domainName": host,
            "domainPrefix": "abc123defg",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": route,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": body is not None,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if path != "/":
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    if body is not None:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


def response_body(invocation: Invocation) -> tuple[int, dict[str, str], bytes]:
    assert invocation.error is None, invocation.error
    response = invocation.response
    raw = response.get("body", "")
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
    return response["statusCode"], {k.lower(): v for k, v in response.get("headers", {}).items()}, body


def test_the_image_runs_the_installed_package_not_a_checkout(image: ImageInstall) -> None:
    found = where_imported(image, "cloud_lambda.search.handler", "cloud_lambda.api.handler", "model.featurizer")
    site = str(image.venv / "lib")
    assert all(path.startswith(site) for path in found.values()), found
    assert not any(str(REPO_ROOT) in path for path in found.values())
    assert not image.in_root("src").exists()  # the Dockerfile removes the sources after the install
    assert list(image.workdir.iterdir()) == []  # Lambda starts in an empty /var/task
    direct_url = list(
        (image.venv / "lib").glob("python3*/site-packages/edge_visual_search-*.dist-info/direct_url.json")
    )
    assert not direct_url or '"editable": true' not in direct_url[0].read_text()


def test_the_batch_command_runs_from_the_image_without_the_device_or_laptop_packages(image: ImageInstall) -> None:
    """AWS Batch runs the entrypoint with ``catalog ...``: the hub (``model.hub``) and the cloud's own commands,
    from an image that holds neither ``simulator`` nor ``edge_component`` (the Dockerfile copies neither)."""
    site = next((image.venv / "lib").glob("python3*/site-packages"))
    assert not (site / "simulator").exists() and not (site / "edge_component").exists()
    for words in (["catalog", "index", "--help"], ["search-image", "--help"]):
        result = subprocess.run(
            [*image.entrypoint, *words], cwd=image.workdir, env=image.env(), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert f"usage: visual-search {words[0]}" in result.stdout


def test_search_handler_from_the_image(
    image: ImageInstall, tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path
) -> None:
    vector = tiny_catalog.vectors[7]
    with container(image, SEARCH_HANDLER, lambda_env(tiny_catalog, redis_server, tiny_model), "search") as api:
        first = api.invoke(feature_event(vector, tiny_catalog.model_id, "cam-img", seq=1))
        warm = [api.invoke(feature_event(vector, tiny_catalog.model_id, "cam-img", seq=s)) for s in (2, 3, 4)]
        again = api.invoke(feature_event(vector, tiny_catalog.model_id, "cam-img", seq=1))
        status = api.invoke(status_event("cam-img"))
        spoofed = api.invoke(
            {**feature_event(vector, tiny_catalog.model_id, "cam-img", seq=9), "topic_device": "cam-x"}
        )
    TIMINGS["search_first_invoke_ms"] = round(first.ms, 1)
    TIMINGS["search_warm_invoke_ms"] = sorted(round(w.ms, 1) for w in warm)
    assert first.response == {"status": "accepted", "device_id": "cam-img", "seq": 1, "matches": 3, "top": "item-007"}
    assert [w.response["status"] for w in warm] == ["accepted"] * 3
    assert again.response == {"status": "duplicate", "device_id": "cam-img", "seq": 1}
    assert status.response == {"status": "accepted", "device_id": "cam-img"}
    assert spoofed.response["status"] == "rejected" and spoofed.response["reason"] == "device_mismatch"
    store = MatchStore(connect(redis_server.url))
    stored = store.latest("cam-img", 10)
    assert [r["seq"] for r in stored] == [4, 3, 2, 1]
    assert stored[-1]["matches"][0]["id"] == "item-007"


def test_api_handler_from_the_image(
    image: ImageInstall, tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path
) -> None:
    store = MatchStore(connect(redis_server.url))
    record = {"v": 1, "device_id": "cam-api", "seq": 5, "ts": time.time(), "model_id": tiny_catalog.model_id}
    assert store.push({**record, "searched_at": time.time(), "matches": [{"id": "item-002", "score": 0.9}]})
    _, png = cv2.imencode(".png", tiny_catalog.images[12])
    with container(image, API_HANDLER, lambda_env(tiny_catalog, redis_server, tiny_model), "api") as api:
        health = api.invoke(http_event("GET", "/api/health"))
        matches = api.invoke(http_event("GET", "/api/devices/cam-api/matches", "n=2"))
        latest = api.invoke(http_event("GET", "/api/latest", "limit=5"))
        photo = api.invoke(http_event("POST", "/api/search", "k=3", png.tobytes(), "image/png"))
        page = api.invoke(http_event("GET", "/"))
        missing = api.invoke(http_event("GET", "/api/nothing-here"))
        malformed = api.invoke({"version": "2.0", "requestContext": {"http": "GET"}})
    TIMINGS["api_first_invoke_ms"] = round(health.ms, 1)
    TIMINGS["api_photo_search_ms"] = round(photo.ms, 1)
    code, headers, body = response_body(health)
    assert code == 200 and json.loads(body)["model_id"] == tiny_catalog.model_id
    code, _, body = response_body(matches)
    assert code == 200 and [r["seq"] for r in json.loads(body)["records"]] == [5]
    code, _, body = response_body(latest)
    assert code == 200 and "cam-api" in body.decode()
    code, _, body = response_body(photo)
    assert code == 200 and json.loads(body)["matches"][0]["id"] == "item-012"
    code, headers, body = response_body(page)  # the web app is package data: it must be in the install
    assert code == 200 and headers["content-type"].startswith("text/html") and b"<html" in body.lower()
    assert response_body(missing)[0] == 404
    assert response_body(malformed)[0] == 400


def test_a_failing_search_is_retried_recorded_and_replayed(
    image: ImageInstall, tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path
) -> None:
    vector = tiny_catalog.vectors[3]
    event = feature_event(vector, tiny_catalog.model_id, "cam-retry", seq=77)
    with (
        mock_aws(),
        container(image, SEARCH_HANDLER, lambda_env(tiny_catalog, redis_server, tiny_model), "retry") as api,
    ):
        sqs = boto3.client("sqs", region_name="eu-west-1")
        queue = sqs.create_queue(QueueName="search-failures")["QueueUrl"]

        def to_queue(record: dict[str, Any]) -> None:
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))

        assert api.invoke(status_event("cam-retry")).response["status"] == "accepted"  # a warm container
        redis_server.stop()  # the match store is down: the function errors, Lambda retries, then gives up
        attempts = api.invoke_async(event, RETRIES, to_queue)
        assert len(attempts) == 1 + RETRIES == 3
        assert all(a.error is not None for a in attempts)
        last_error = attempts[-1].error or {}
        assert last_error["errorType"] == "MatchStoreUnavailable" and "redis write failed" in last_error["errorMessage"]

        redis_server.start()  # fixed; replay through the deployed function (what --function does)

        def invoke(payload: dict[str, Any]) -> dict[str, Any]:
            done = api.invoke(payload)
            if done.error is not None:
                raise RuntimeError(done.error)
            return dict(done.response)

        summary = Replayer(sqs, queue, invoke, wait_s=0).replay()
        assert summary.counts == {"accepted": 1}
        assert summary.records[0]["condition"] == "RetriesExhausted" and summary.records[0]["attempts"] == 3
        assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    stored = MatchStore(connect(redis_server.url)).latest("cam-retry", 5)
    assert [r["seq"] for r in stored] == [77]


def test_a_module_missing_from_the_install_fails_the_container_init(
    image: ImageInstall, tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path
) -> None:
    """No checkout behind the install: a module absent from site-packages is absent, and Lambda is told so."""
    (installed,) = (image.venv / "lib").glob("python3*/site-packages/model/contracts/wire.py")
    hidden = installed.with_suffix(".hidden")
    installed.rename(hidden)
    api = RuntimeApi()
    process = start_container(
        image,
        [SEARCH_HANDLER],
        image.root / "missing.log",
        AWS_LAMBDA_RUNTIME_API=api.address,
        **lambda_env(tiny_catalog, redis_server, tiny_model),
    )
    try:
        process.wait(120)
    finally:
        hidden.rename(installed)
        stop_container(process)
        api.close()
    assert process.returncode != 0 and api.first_poll_at is None
    assert api.init_error is not None and api.init_error["errorType"] == "Runtime.ImportModuleError"
    assert "model.contracts.wire" in api.init_error["errorMessage"]
