"""One compute thread per search process: faiss's OpenMP pool and numpy's BLAS.

A search handles one message at a time and scales out as more containers, not more threads. Its numeric work
per message is small: a projection head of 4 × 1280 by 1280 × 256, an exact mat-vec over a small catalog, a
graph walk. A second thread gains nothing on work that size, and when its core is busy (a shared host, a
Lambda container's CPU share of about one vCPU at 2 GB) every call waits for it: on this project's shared
2-core machine at load 3, numpy's default OpenBLAS pool took 32 ms (p50) for one message's head projection
and 40 ms for an exact search of 10k 256-d items, against 0.09 ms and 1.8 ms with one thread
(``python -m bench retrieval`` shows the effect on whole messages).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_limited = False


def limit_compute_threads() -> None:
    """Pin faiss and the BLAS numpy uses to one thread, once per process (later calls do nothing)."""
    global _limited
    with _lock:
        if _limited:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        try:
            import faiss
        except ImportError:  # an exact-only deployment may leave faiss out
            pass
        else:
            faiss.omp_set_num_threads(1)
        _limited = True
