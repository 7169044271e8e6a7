"""One SNS notification per handled event, when a topic is configured."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class Notifier:
    def __init__(self, topic_arn: str, client: Any | None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    def publish(self, subject: str, message: dict[str, Any]) -> str | None:
        """Publishes; returns the error text instead of raising (a lost notification must not
        turn a finished drain into a failed invocation that Lambda would retry)."""
        if not self.topic_arn or self._client is None:
            return None
        try:
            self._client.publish(
                TopicArn=self.topic_arn, Subject=subject[:100], Message=json.dumps(message, default=str)
            )
        except (BotoCoreError, ClientError) as exc:
            return str(exc)
        return None
