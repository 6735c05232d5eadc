"""The worker end to end: real Kafka broker, real HTTP to the simulator."""

from __future__ import annotations

import pytest

from tests.harness import ReplyCollector, RequestSender, lookup_request

pytestmark = pytest.mark.kafka

REPLY_TIMEOUT_S = 30.0


async def test_known_and_unknown_cards_answered(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send_requests([("known-and-unknown", ["1000000000016", "2000000000025", "CARD10101", "9999999999999"])])
        missing = await replies.wait_for(["known-and-unknown"], timeout_s=REPLY_TIMEOUT_S)
        assert not missing
        reply = replies.reply("known-and-unknown")

    assert reply["status"] == "complete"
    statuses = [(result["card_number"], result["status"]) for result in reply["results"]]
    assert statuses == [
        ("1000000000016", "found"),
        ("2000000000025", "found"),
        ("CARD10101", "found"),
        ("9999999999999", "not_found"),
    ]
    card = reply["results"][0]["card"]
    for field in ("card_id", "customer_id", "card_type_id", "card_number", "valid_from", "valid_to", "state"):
        assert field in card, f"found card lacks the API field {field}"
    assert card["card_number"] == "1000000000016"
    assert card["secondary_card_number"] == "AXNFUAIOHFDSNKA"
    assert card["is_active"] is True
    assert card["is_valid_now"] is True


async def test_many_requests_merge_into_few_calls(topics, simulator, start_worker):
    await start_worker.start(topics, simulator, batch_linger_ms=20)
    pool = ["1000000000016", "2000000000025", "0001234567890", "CARD10101", "1000000000023", "AbC123xYz"]
    pool += [f"UNKNOWN{i:04d}" for i in range(40)]
    requests = [(f"bulk-{i}", [pool[i % len(pool)], pool[(i * 7 + 1) % len(pool)], pool[(i * 13 + 2) % len(pool)]]) for i in range(500)]
    card_numbers_asked = sum(len(numbers) for _, numbers in requests)

    async with ReplyCollector(topics.replies) as replies, RequestSender(topics.requests) as sender:
        await sender.send_requests(requests)
        missing = await replies.wait_for([request_id for request_id, _ in requests], timeout_s=60)

    assert not missing, f"{len(missing)} requests got no reply"
    for request_id, numbers in requests:
        reply = replies.reply(request_id)
        assert reply["status"] == "complete"
        assert [result["card_number"] for result in reply["results"]] == list(dict.fromkeys(numbers))
    stats = simulator.stats()
    assert stats["cards_calls"] * 10 <= card_numbers_asked, (
        f"{stats['cards_calls']} GET /cards calls for {card_numbers_asked} card numbers: batching did not merge enough"
    )
    assert stats["card_numbers_requested"] < card_numbers_asked


async def test_leading_zeros_and_letters_survive(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    numbers = ["0001234567890", "0000000000017", "CARD10101", "card10101", "AbC123xYz"]
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send_requests([("strings", numbers)])
        assert not await replies.wait_for(["strings"], timeout_s=REPLY_TIMEOUT_S)
        reply = replies.reply("strings")

    for number, result in zip(numbers, reply["results"], strict=True):
        assert result["card_number"] == number
        assert result["status"] == "found", f"{number} was not found"
        assert result["card"]["card_number"] == number


async def test_malformed_message_dead_lettered_then_next_answered(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.dlq) as dlq, ReplyCollector(topics.replies) as replies:
        await sender.send(b"{not json", key=b"bad")
        await sender.send(lookup_request("after-bad", ["1000000000016"]), key=b"good")
        await sender.flush()
        assert not await replies.wait_for(["after-bad"], timeout_s=REPLY_TIMEOUT_S)
        dead = await dlq.wait_for_records(1, timeout_s=REPLY_TIMEOUT_S)

    assert len(dead) == 1
    assert dead[0].value == b"{not json"
    assert dead[0].key == b"bad"
    assert b"not valid UTF-8 JSON" in dead[0].headers["x-dlq-reason"]
    assert replies.reply("after-bad")["results"][0]["status"] == "found"


async def test_reply_to_and_correlation_id_honoured(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    private_topic = topics.replies + ".private"
    from tests.harness import create_topics

    await create_topics([private_topic])
    async with RequestSender(topics.requests) as sender, ReplyCollector(private_topic) as private, ReplyCollector(topics.replies) as default:
        await sender.send(
            lookup_request("with-reply-to", ["2000000000025"]),
            key=b"customer-42",
            headers={"reply_to": private_topic, "correlation_id": "corr-123"},
        )
        await sender.send(b'{"card_numbers": ["2000000000025"]}', key=b"only-corr", headers={"correlation_id": "corr-456"})
        await sender.flush()
        assert not await private.wait_for(["with-reply-to"], timeout_s=REPLY_TIMEOUT_S)
        assert not await default.wait_for(["corr-456"], timeout_s=REPLY_TIMEOUT_S)
        await default.poll(1.0)

    reply = private.by_request_id["with-reply-to"][0]
    assert reply.headers["correlation_id"] == b"corr-123"
    assert reply.key == b"customer-42"
    assert "with-reply-to" not in default.by_request_id
    fallback = default.by_request_id["corr-456"][0]
    assert fallback.headers["correlation_id"] == b"corr-456"
    assert fallback.json()["results"][0]["status"] == "found"


async def test_secondary_number_found_with_secondary_search(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send(lookup_request("secondary", ["AXNFUAIOHFDSNKA"], search_secondary_card_number=True))
        await sender.send(lookup_request("primary-only", ["AXNFUAIOHFDSNKA"]))
        await sender.flush()
        assert not await replies.wait_for(["secondary", "primary-only"], timeout_s=REPLY_TIMEOUT_S)

    secondary = replies.reply("secondary")["results"][0]
    assert secondary["status"] == "found"
    assert secondary["card"]["card_number"] == "1000000000016"
    assert replies.reply("primary-only")["results"][0]["status"] == "not_found"


async def test_expired_token_renewed_with_one_login(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send_requests([("before-expiry", ["1000000000016"])])
        assert not await replies.wait_for(["before-expiry"], timeout_s=REPLY_TIMEOUT_S)
        logins_before = simulator.stats()["logins"]

        simulator.set_faults(expire_tokens=True)
        ids = [f"after-expiry-{i}" for i in range(50)]
        await sender.send_requests((request_id, ["2000000000025", f"X{i}"]) for i, request_id in enumerate(ids))
        assert not await replies.wait_for(ids, timeout_s=REPLY_TIMEOUT_S)

    assert simulator.stats()["logins"] == logins_before + 1
    for request_id in ids:
        assert replies.reply(request_id)["status"] == "complete"


async def test_invalid_values_answered_per_card(topics, simulator, start_worker):
    await start_worker.start(topics, simulator, card_number_max_length=20)
    values = ["1000000000016", "", "   ", "a\u0000b", "X" * 21, 2000000000025, 1.5, None, True]
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send_requests([("mixed-values", values)])
        assert not await replies.wait_for(["mixed-values"], timeout_s=REPLY_TIMEOUT_S)
        reply = replies.reply("mixed-values")

    statuses = [result["status"] for result in reply["results"]]
    assert statuses == ["found", "invalid", "invalid", "invalid", "invalid", "found", "invalid", "invalid", "invalid"]
    assert reply["results"][5]["card_number"] == "2000000000025"
    for result in reply["results"]:
        if result["status"] == "invalid":
            assert result["error"]["message"], f"no reason for {result['card_number']!r}"
    assert reply["status"] == "complete"


async def test_invalid_request_with_id_rejected(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send(b'{"request_id": "too-many", "card_numbers": ' + str(["1"] * 1001).replace("'", '"').encode() + b"}")
        await sender.send(b'{"request_id": "no-numbers"}')
        await sender.flush()
        assert not await replies.wait_for(["too-many", "no-numbers"], timeout_s=REPLY_TIMEOUT_S)

    for request_id in ("too-many", "no-numbers"):
        reply = replies.reply(request_id)
        assert reply["status"] == "rejected"
        assert "card_numbers" in reply["error"]["message"]
