"""Where match records are published after they are stored: IoT data plane, MQTT, or nowhere."""

from cloud_lambda.publish.base import NullPublisher, Publisher, PublishError, create_publisher

__all__ = ["NullPublisher", "PublishError", "Publisher", "create_publisher"]
