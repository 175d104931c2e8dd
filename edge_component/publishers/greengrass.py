"""Greengrass v2: ``PublishToIoTCore`` over IPC with the real awsiotsdk client (QoS 1, async futures).

A completed IPC publish means the nucleus accepted the message (it spools while offline), not that IoT
Core has it; the outbound queue still bounds what we hand over. Messages go one at a time so that a
failed publish can be retried without reordering.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from edge_component.publishers.base import Outbound, Publisher, PublishError, register_publisher
from model.contracts.status import offline_payload
from model.contracts.topics import status_topic

log = logging.getLogger(__name__)


@register_publisher
class GreengrassIpcPublisher(Publisher):
    kind = "greengrass"

    def __init__(self, device_id: str, **kwargs: Any) -> None:
        kwargs["max_inflight"] = 1
        super().__init__(device_id, **kwargs)
        self._ipc: Any = None

    def _open(self) -> None:
        try:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        except ImportError as exc:
            raise PublishError("awsiotsdk is not installed (pip install awsiotsdk)") from exc
        try:
            self._ipc = GreengrassCoreIPCClientV2()
        except Exception as exc:  # the SDK raises several types for "no nucleus here"
            raise PublishError(f"cannot connect to the Greengrass nucleus IPC socket: {exc}") from exc

    @property
    def connected(self) -> bool:
        return self._ipc is not None

    def _send(self, item: Outbound, qos: int) -> Future[Any]:
        from awsiot.greengrasscoreipc.model import QOS

        future: Future[Any] = self._ipc.publish_to_iot_core_async(
            topic_name=item.topic, qos=QOS.AT_LEAST_ONCE if qos else QOS.AT_MOST_ONCE, payload=item.payload
        )
        return future

    def _send_offline_status(self) -> None:
        from awsiot.greengrasscoreipc.model import QOS

        self._ipc.publish_to_iot_core_async(
            topic_name=status_topic(self.device_id), qos=QOS.AT_LEAST_ONCE, payload=offline_payload(self.device_id)
        ).result(timeout=min(self.timeout_s, 2.0))

    def _close(self) -> None:
        ipc, self._ipc = self._ipc, None
        if ipc is not None:
            ipc.close()
