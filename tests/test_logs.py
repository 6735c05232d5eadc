"""Logs: JSON and text formats, masking of card numbers, repeat limits, and no secrets in a real run."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from simulator.testing import SimulatorProcess
from tests.harness import ReplyCollector, RequestSender, wait_until
from worker.logs import RedactingFilter, RepeatFilter, build_handler, configure_logging, redact
from worker.runtime import Worker
from worker.settings import LogFormat, load_settings

REPLY_TIMEOUT_S = 30.0


def _emit(log_format: LogFormat, message: str, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    logger = logging.Logger("test.logs")
    logger.addHandler(build_handler(log_format, stream))
    logger.warning(message, *args, extra=extra)
    return stream.getvalue()


# --- Formats -----------------------------------------------------------------


def test_json_line_has_fields_and_context():
    line = _emit(LogFormat.JSON, "replied %s", "complete", request_id="r-1", partition=2, offset=41)
    document = json.loads(line)
    assert document["level"] == "WARNING"
    assert document["logger"] == "test.logs"
    assert document["message"] == "replied complete"
    assert document["time"].endswith("Z")
    assert document["request_id"] == "r-1"
    assert document["partition"] == 2
    assert document["offset"] == 41


def test_json_one_object_per_line():
    stream = io.StringIO()
    logger = logging.Logger("test.logs")
    logger.addHandler(build_handler(LogFormat.JSON, stream))
    logger.warning("first\nwith a line break")
    logger.warning("second")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["message"] for line in lines] == ["first\nwith a line break", "second"]


def test_text_line_appends_context():
    line = _emit(LogFormat.TEXT, "replied %s", "complete", request_id="r 1", partition=2)
    assert "WARNING test.logs: replied complete" in line
    assert line.rstrip().endswith('request_id="r 1" partition=2')


# --- Masking -----------------------------------------------------------------


def test_redact_masks_card_like_tokens():
    text = redact("card 4111111111111111 and CARD10101 near AbC123xYz")
    assert "4111111111111111" not in text
    assert "************1111" in text
    assert "*****0101" in text
    assert "*****xYz" not in text  # the last 4 stay readable
    assert "*****3xYz" in text


def test_redact_keeps_words_and_short_numbers():
    text = "GET /cards answered 500 in 0.003s (attempt 2): Internal Server Error; offset 1234567"
    assert redact(text) == text


def test_exception_text_masked_in_traceback():
    stream = io.StringIO()
    logger = logging.Logger("test.logs")
    logger.addHandler(build_handler(LogFormat.JSON, stream))
    try:
        raise ValueError("input_value='4111111111111111' is not valid")
    except ValueError:
        logger.exception("lookup failed")
    output = stream.getvalue()
    assert "4111111111111111" not in output
    assert "************1111" in output
    assert "Traceback" in json.loads(output)["exc_info"]


def test_exception_argument_masked():
    line = _emit(LogFormat.TEXT, "call failed: %s", RuntimeError("no card 4111111111111111"))
    assert "4111111111111111" not in line
    assert "************1111" in line


def test_redacting_filter_keeps_plain_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "topic %s", ("requests.t-abcdef1234",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "topic requests.t-abcdef1234"


# --- Repeats -----------------------------------------------------------------


def test_repeated_warning_limited_then_counted():
    now = [0.0]
    repeat = RepeatFilter(burst=3, window_s=10.0, clock=lambda: now[0])

    def passes(message: str = "GET /cards answered %d") -> bool:
        return repeat.filter(logging.LogRecord("api", logging.WARNING, __file__, 1, message, (429,), None))

    assert [passes() for _ in range(5)] == [True, True, True, False, False]
    assert passes("another warning")
    now[0] = 10.0
    record = logging.LogRecord("api", logging.WARNING, __file__, 1, "GET /cards answered %d", (429,), None)
    assert repeat.filter(record)
    assert record.suppressed_repeats == 2


def test_repeat_filter_passes_errors():
    repeat = RepeatFilter(burst=1, window_s=10.0, clock=lambda: 0.0)
    records = [logging.LogRecord("api", logging.ERROR, __file__, 1, "failed", (), None) for _ in range(3)]
    assert all(repeat.filter(record) for record in records)


def test_repeat_filter_limits_aiokafka_errors():
    repeat = RepeatFilter(burst=2, window_s=10.0, clock=lambda: 0.0)
    records = [
        logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, "Unable connect to %r: %r", ("node", "refused"), None)
        for _ in range(5)
    ]
    assert [repeat.filter(record) for record in records] == [True, True, False, False, False]


# --- A whole run -------------------------------------------------------------


@contextlib.contextmanager
def captured_worker_logs(log_format: LogFormat) -> Iterator[io.StringIO]:
    """Configure logging as `python -m worker` does, at DEBUG, into a buffer; restore pytest's setup after."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved_levels = {name: logging.getLogger(name).level for name in ("", "faststream", "aiokafka", "httpx", "httpcore")}
    stream = io.StringIO()
    configure_logging(load_settings(log_format=log_format, log_level="DEBUG"), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.kafka
async def test_run_logs_no_card_numbers_or_secrets(topics):
    password = f"pw-{uuid.uuid4().hex}"
    sasl_password = f"sasl-{uuid.uuid4().hex}"
    unknown = [f"7{uuid.uuid4().int % 10**15:015d}" for _ in range(3)]
    found = ["1000000000016", "2000000000025", "CARD10101", "AbC123xYz", "0001234567890"]
    too_long = "5" * 25
    tokens: list[str] = []

    with SimulatorProcess(extra_args=["--password", password]) as simulator, captured_worker_logs(LogFormat.JSON) as stream:
        settings = load_settings(
            **topics.settings_overrides(),
            api_base_url=simulator.base_url,
            api_password=password,
            kafka_sasl_password=sasl_password,  # unused with PLAINTEXT, but must never be logged either
            http_port=0,
            card_number_max_length=20,
            api_backoff_initial_s=0.05,
            api_retry_after_max_s=1.0,
            api_max_attempts=2,
        )
        worker = Worker(settings)
        app = worker.create_app()
        await app.start()
        try:
            async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies, ReplyCollector(topics.dlq) as dlq:
                # found, not found and invalid numbers
                await sender.send_requests([("run-found", found), ("run-unknown", unknown[:2]), ("run-invalid", [too_long, found[0]])])
                assert not await replies.wait_for(["run-found", "run-unknown", "run-invalid"], timeout_s=REPLY_TIMEOUT_S)
                # The client's token is private; the test reads it to search the logs for it.
                tokens.append(worker.client._token or "")

                # rejected (has an id) and dead-lettered (no id, or not JSON) requests carrying card numbers
                await sender.send(json.dumps({"request_id": "run-rejected", "card_numbers": found[0]}).encode())
                await sender.send(json.dumps({"card_numbers": {"number": unknown[2]}}).encode())
                await sender.send(b'{"request_id": "broken", "card_numbers": ["' + unknown[2].encode() + b'"')
                await sender.flush()
                assert not await replies.wait_for(["run-rejected"], timeout_s=REPLY_TIMEOUT_S)
                assert len(await dlq.wait_for_records(2, timeout_s=REPLY_TIMEOUT_S)) == 2

                # 429 with Retry-After, then 5xx and a rejected call, then an expired token (401 and a new login)
                simulator.set_faults(fail_next={"status": 429, "count": 1, "retry_after": "1"})
                await sender.send_requests([("run-429", [found[1], unknown[0]])])
                assert not await replies.wait_for(["run-429"], timeout_s=REPLY_TIMEOUT_S)
                simulator.set_faults(fail_next={"status": 503, "count": 1})
                await sender.send_requests([("run-503", [found[2]])])
                assert not await replies.wait_for(["run-503"], timeout_s=REPLY_TIMEOUT_S)
                simulator.set_faults(fail_next={"status": 400, "count": 1})
                await sender.send_requests([("run-400", [found[3]])])
                assert not await replies.wait_for(["run-400"], timeout_s=REPLY_TIMEOUT_S)
                simulator.set_faults(expire_tokens=True)
                await sender.send_requests([("run-401", [found[4], unknown[1]])])
                assert not await replies.wait_for(["run-401"], timeout_s=REPLY_TIMEOUT_S)
                tokens.append(worker.client._token or "")
                assert await wait_until(lambda: worker.pipeline.in_flight == 0, timeout_s=10)
        finally:
            await app.stop()
        output = stream.getvalue()

    assert replies.reply("run-429")["results"][0]["status"] == "found"
    assert replies.reply("run-400")["results"][0]["status"] == "error"
    assert tokens[0], "the worker never logged in"
    assert tokens[1] != tokens[0], "the expired token did not lead to a new login"

    lines = output.splitlines()
    assert len(lines) > 10
    documents = [json.loads(line) for line in lines]
    for document in documents:
        assert {"time", "level", "logger", "message"} <= document.keys(), document
    api_lines = [document for document in documents if document.get("endpoint") == "GET /cards"]
    assert {document["status"] for document in api_lines} >= {200, 429, 503, 400}
    assert all("duration_s" in document for document in api_lines)
    dead_letter_lines = [document for document in documents if "dead-letter" in document["message"]]
    assert dead_letter_lines and all("offset" in document and "partition" in document for document in dead_letter_lines)

    for number in [*found, *unknown, too_long]:
        assert number not in output, f"the card number {number} appears in the logs"
    for secret, description in [(password, "API password"), (sasl_password, "SASL password"), (tokens[0], "bearer token"), (tokens[1], "renewed bearer token")]:
        assert secret not in output, f"the {description} appears in the logs"
