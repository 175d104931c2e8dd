"""The outbound queue (``edge_component.publishers.base.OutboundQueue``): bounded, drops the oldest, counts exactly."""

from __future__ import annotations

from edge_component.publishers.base import Outbound, OutboundQueue


def test_queue_drops_oldest_and_counts_exactly() -> None:
    queue = OutboundQueue(3)
    for seq in range(7):
        queue.put(Outbound("t", b"x", seq))
    assert queue.dropped == 4 and len(queue) == 3
    first = queue.pop()
    assert first is not None and first.seq == 4
    queue.requeue_front([first])
    assert [queue.pop().seq for _ in range(3)] == [4, 5, 6]  # type: ignore[union-attr]
