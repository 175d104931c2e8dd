"""Search Lambda entry point: the service is built once per container, then called per IoT rule event.

Three rules target this function: ``visualsearch/+/features``, ``visualsearch/+/status`` and
``visualsearch/+/thumbnail`` (the last two add ``'status'`` / ``'thumbnail' AS topic_kind``); IoT invokes it
asynchronously. A Redis outage raises, so the invocation fails: Lambda retries it twice, then sends the event
with its error to the OnFailure queue (template ``EventInvokeConfig``), from which
``python -m cloud_lambda.search.replay`` runs it again. Bad input is rejected and counted, never raised (a
retry would not help it).
"""

from __future__ import annotations

from typing import Any

from cloud_lambda.search.container import ContainerService

_container = ContainerService()
get_service = _container.get


def reset_service() -> None:
    """Forget the cached service (tests; a config change in a warm container)."""
    _container.set(None)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    service = get_service()
    if isinstance(event, dict) and event.get("topic_kind") == "status":
        return service.handle_status_event(event)
    if isinstance(event, dict) and event.get("topic_kind") == "thumbnail":
        return service.handle_thumbnail_event(event)
    return service.handle_feature_event(event)
