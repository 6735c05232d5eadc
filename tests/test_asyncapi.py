"""The committed AsyncAPI document matches what the real FastStream app generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_asyncapi_document_is_current():
    result = subprocess.run(
        [sys.executable, "scripts/asyncapi.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_asyncapi_documents_every_topic_and_message():
    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert set(document["channels"]) == {"card-lookup.requests", "card-lookup.replies", "card-lookup.dlq"}
    schemas = document["components"]["schemas"]
    request = schemas["LookupRequest"]
    assert request["required"] == ["card_numbers"]
    assert request["properties"]["card_numbers"]["items"] == {"type": "string"}
    assert request["properties"]["card_numbers"]["maxItems"] == 1000
    reply = schemas["LookupReply"]
    assert {"request_id", "status", "results"} <= set(reply["properties"])
    assert set(schemas["CardStatus"]["enum"]) == {"found", "not_found", "invalid", "error"}
    assert set(schemas["ReplyStatus"]["enum"]) == {"complete", "partial", "rejected"}
