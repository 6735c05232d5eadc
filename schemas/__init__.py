"""Message contracts of the card lookup worker.

`requests` and `replies` are the Kafka messages users exchange with the worker;
`carecloud` models the parts of the CareCloud Enterprise API the worker reads;
`dead_letter` names the headers added to messages sent to the dead-letter topic.
"""

from schemas.carecloud import ApiCard, CardsPage, LoginData
from schemas.dead_letter import DeadLetterHeaders
from schemas.replies import Card, CardResult, CardStatus, ErrorInfo, ErrorKind, LookupReply, ReplyStatus
from schemas.requests import MAX_CARD_NUMBERS_PER_REQUEST, LookupRequest

__all__ = [
    "MAX_CARD_NUMBERS_PER_REQUEST",
    "ApiCard",
    "Card",
    "CardResult",
    "CardStatus",
    "CardsPage",
    "DeadLetterHeaders",
    "ErrorInfo",
    "ErrorKind",
    "LoginData",
    "LookupReply",
    "LookupRequest",
    "ReplyStatus",
]
