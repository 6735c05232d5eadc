"""Headers the worker adds to a message it sends to the dead-letter topic.

The dead-letter copy keeps the original value, key and headers unchanged, so a
replay tool can put it back on the request topic as it was.
"""

from __future__ import annotations


class DeadLetterHeaders:
    REASON = "x-dlq-reason"
    SOURCE_TOPIC = "x-dlq-source-topic"
    SOURCE_PARTITION = "x-dlq-source-partition"
    SOURCE_OFFSET = "x-dlq-source-offset"
    FAILED_AT = "x-dlq-failed-at"
    # Set to "true" when the original record had no correlation_id header:
    # the producer adds a generated one, which a replay must drop again.
    NO_CORRELATION_ID = "x-dlq-no-correlation-id"
