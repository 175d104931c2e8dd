"""The search service a Lambda container builds once and its invocations share.

Lambda reuses a container for many invocations (the execution environment lifecycle:
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html), so loading the index and the
Redis client on the first event and keeping them is the documented way to pay the cold start once. Both entry
points (the search function and the API function) hold their service this way.
"""

from __future__ import annotations

import threading

from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings


class ContainerService:
    """One :class:`SearchService` per container: built from the environment on first use, swappable."""

    def __init__(self) -> None:
        self._service: SearchService | None = None
        self._lock = threading.Lock()

    def get(self) -> SearchService:
        with self._lock:
            if self._service is None:
                self._service = SearchService(CloudSettings.from_env())
            return self._service

    def set(self, service: SearchService | None) -> None:
        """Use ``service`` from now on; None builds a new one on next use (tests; a config change in a warm
        container)."""
        with self._lock:
            self._service = service
