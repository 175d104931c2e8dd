"""The search runs its numeric work on one thread: a loaded catalog leaves numpy's BLAS and faiss with one
(a second thread only waits for a busy core on work the size of one message: cloud_lambda/search/threads.py)."""

from __future__ import annotations

import faiss
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import cloud_lambda.search.threads as threads
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from tests.cloud_lambda.conftest import TinyCatalog, feature_event


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_first_search_leaves_one_blas_and_one_faiss_thread(
    tiny_catalog: TinyCatalog, cloud_settings: CloudSettings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(threads, "_limited", False)
    with threadpool_limits(limits=2, user_api="blas"):
        faiss.omp_set_num_threads(2)
        assert blas_threads() == {2}
        service = SearchService(cloud_settings.model_copy(update={"index_dir": str(tiny_catalog.folder)}))
        try:
            event = feature_event(tiny_catalog.vectors[3], tiny_catalog.model_id, seq=1)
            assert service.handle_feature_event(event)["status"] == "accepted"
            assert blas_threads() == {1}
            assert faiss.omp_get_max_threads() == 1
        finally:
            service.metadata.close()
