"""Where match records are published after they are stored: IoT data plane, MQTT, or nowhere."""

from cloud_lambda.publish.base import MatchPublisher, MatchPublishError, NullMatchPublisher, create_match_publisher

__all__ = ["MatchPublishError", "MatchPublisher", "NullMatchPublisher", "create_match_publisher"]
