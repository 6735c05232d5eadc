"""Worker settings, read from `CARD_LOOKUP_*` environment variables.

Values come, in order of precedence, from keyword arguments, the environment,
a `.env` file in the working directory, and secret files in
`CARD_LOOKUP_SECRETS_DIR` (one file per setting, named like the variable in
lower case, for example `card_lookup_api_password`; this is how Kubernetes
mounts a Secret as a volume).
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CARD_LOOKUP_"
SECRETS_DIR_VARIABLE = f"{ENV_PREFIX}SECRETS_DIR"

# The API accepts at most 1000 values of `card_number_list[]` per call.
API_MAX_CARD_NUMBERS_PER_CALL = 1000


class SecurityProtocol(str, Enum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(str, Enum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class LogFormat(str, Enum):
    JSON = "json"
    TEXT = "text"


PositiveSeconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """Every setting of the worker; the README's settings table is generated from it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Kafka connection.
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list of Kafka brokers.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        SecurityProtocol.PLAINTEXT,
        description="Kafka `security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None,
        description="SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    kafka_ssl_cafile: str | None = Field(None, description="Path of the CA bundle that signs the brokers' certificates.")
    kafka_ssl_certfile: str | None = Field(None, description="Path of the client certificate for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(None, description="Path of the client certificate's private key.")

    # Topics and the consumer group.
    request_topic: str = Field("card-lookup.requests", description="Topic the worker consumes requests from.")
    reply_topic: str = Field(
        "card-lookup.replies",
        description="Topic for replies when a request has no `reply_to` header.",
    )
    dlq_topic: str = Field("card-lookup.dlq", description="Dead-letter topic for messages the worker cannot reply to.")
    consumer_group: str = Field("card-lookup-worker", description="Kafka consumer group id; replicas share it.")
    create_topics: bool = Field(
        False,
        description="Create the request, reply and dead-letter topics at start if they are missing.",
    )
    topic_partitions: int = Field(6, ge=1, description="Partition count for topics the worker creates.")
    topic_replication_factor: int = Field(1, ge=1, description="Replication factor for topics the worker creates.")

    # Admission and the consumer.
    max_in_flight_requests: int = Field(
        2000,
        ge=1,
        description="Requests held at once; partitions are paused while this many are in flight.",
    )
    max_request_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request message accepted, in bytes; larger ones go to the dead-letter topic.",
    )
    max_poll_records: int = Field(500, ge=1, description="Records fetched from Kafka per poll.")
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Kafka `max.poll.interval.ms`: the consumer leaves its group if it does not poll this often.",
    )
    session_timeout_ms: int = Field(45_000, ge=1000, description="Kafka `session.timeout.ms`.")
    commit_interval_ms: int = Field(
        500,
        ge=10,
        description="How often finished offsets are committed, in milliseconds.",
    )
    shutdown_timeout_s: PositiveSeconds = Field(
        25.0,
        description="Seconds to finish in-flight requests after SIGTERM; keep below the pod's termination grace period.",
    )
    publish_max_attempts: int = Field(
        0,
        ge=0,
        description="Attempts to publish one reply before giving up; 0 retries until shutdown.",
    )

    # Request content.
    card_number_max_length: int = Field(
        64,
        ge=1,
        le=1024,
        description="Maximum card number length, in characters; longer values get the result `invalid`.",
    )
    request_default_deadline_ms: int = Field(
        30_000,
        ge=100,
        description="Time a request may take when it sets no `deadline_ms`, in milliseconds.",
    )

    # CareCloud API.
    api_base_url: str = Field(
        "http://127.0.0.1:8080/webservice/rest-api/enterprise-interface/v1.0",
        description="Enterprise API base URL, including the version segment.",
        json_schema_extra={"accepted": "an http:// or https:// URL"},
    )
    api_external_application_id: str = Field(
        "simulator-app",
        description="`user_external_application_id` for the login call.",
    )
    api_login: str = Field("simulator", description="API user login.")
    api_password: SecretStr = Field(SecretStr("simulator"), description="API user password (secret).")
    api_accept_language: str = Field("en", description="`Accept-Language` header sent to the API.")
    project_timezone: str = Field(
        "UTC",
        description="IANA time zone of the CareCloud project; the API's datetimes are local to it.",
        json_schema_extra={"accepted": "an IANA time zone name, such as Europe/Prague or UTC"},
    )
    api_connect_timeout_s: PositiveSeconds = Field(5.0, description="Connect timeout for API calls, in seconds.")
    api_read_timeout_s: PositiveSeconds = Field(15.0, description="Read timeout for API calls, in seconds.")
    token_refresh_margin_s: float = Field(
        60.0,
        ge=0,
        description="Log in again this many seconds before the bearer token's `valid_to`.",
    )

    # Batching.
    batch_max_cards: int = Field(
        100,
        ge=1,
        le=API_MAX_CARD_NUMBERS_PER_CALL,
        description="Most card numbers merged into one `GET /cards` call (the API allows 1000).",
    )
    batch_max_url_bytes: int = Field(
        8192,
        ge=512,
        description="Maximum request URL length of one `GET /cards` call, in bytes.",
    )
    batch_linger_ms: float = Field(
        5.0,
        ge=0,
        description="How long a batch waits for more card numbers before it is sent, in milliseconds.",
    )

    # Upstream limiter.
    api_max_concurrency: int = Field(8, ge=1, description="Ceiling of API calls in flight.")
    api_min_concurrency: int = Field(1, ge=1, description="Floor the adaptive in-flight cap never shrinks below.")
    api_adaptive_concurrency: bool = Field(
        True,
        description="Shrink the in-flight cap on 429 and slow responses, grow it on success.",
    )
    api_rate_limit_per_s: float | None = Field(
        None,
        gt=0,
        description="Token-bucket rate of API calls per second; unset means no fixed rate.",
    )
    api_rate_burst: int = Field(5, ge=1, description="Token-bucket burst: calls that may leave at once.")
    api_max_attempts: int = Field(5, ge=1, description="Attempts per API call before its cards get `error`.")
    api_backoff_initial_s: PositiveSeconds = Field(
        1.0,
        description="First backoff after a 429 without `Retry-After`, 5xx or timeout, in seconds; it doubles.",
    )
    api_backoff_max_s: PositiveSeconds = Field(30.0, description="Maximum single backoff, in seconds.")
    api_retry_after_max_s: PositiveSeconds = Field(
        120.0,
        description="Cap on a `Retry-After` pause the API asks for, in seconds.",
    )

    # Operations.
    http_host: str = Field(
        "127.0.0.1",
        description="Address of the health and metrics server; the image and the chart set 0.0.0.0 so probes and Prometheus reach it.",
    )
    http_port: int = Field(8000, ge=0, le=65535, description="Port of the health and metrics server; 0 disables it.")
    log_format: LogFormat = Field(LogFormat.JSON, description="`json` for structured logs, `text` for local runs.")
    log_level: str = Field(
        "INFO",
        description="Python logging level: DEBUG, INFO, WARNING or ERROR.",
        json_schema_extra={"accepted": "DEBUG, INFO, WARNING, ERROR, CRITICAL"},
    )

    @field_validator("project_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Prague' or 'UTC'"
            ) from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL; set the API's full base URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.api_min_concurrency > self.api_max_concurrency:
            raise ValueError(
                f"{ENV_PREFIX}API_MIN_CONCURRENCY ({self.api_min_concurrency}) is above "
                f"{ENV_PREFIX}API_MAX_CONCURRENCY ({self.api_max_concurrency}); lower the floor or raise the ceiling"
            )
        uses_sasl = self.kafka_security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)
        if uses_sasl and (self.kafka_sasl_mechanism is None or not self.kafka_sasl_username):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol.value} needs "
                f"{ENV_PREFIX}KAFKA_SASL_MECHANISM, {ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.project_timezone)


class SettingsError(Exception):
    """Raised when the environment contains a setting the worker cannot use."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one readable message."""
    secrets_dir = os.environ.get(SECRETS_DIR_VARIABLE)
    try:
        if secrets_dir:
            return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """Format pydantic's errors as one line per variable, with its value and the accepted values."""
    lines = ["invalid settings:"]
    for error in exc.errors():
        if not error["loc"]:
            # A check across several settings: its message names the variables.
            lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
            continue
        field = str(error["loc"][0])
        shown = error.get("input")
        if "password" in field or isinstance(shown, dict):
            shown = "<hidden>"
        accepted = accepted_values(field)
        suffix = f" (accepted: {accepted})" if accepted else ""
        lines.append(f"  {ENV_PREFIX}{field.upper()}={shown!r}: {error['msg']}{suffix}")
    return "\n".join(lines)


def accepted_values(field: str) -> str:
    """Describe the values a setting accepts, from its type and bounds; empty when any string goes."""
    info = Settings.model_fields.get(field)
    if info is None:
        return ""
    if isinstance(info.json_schema_extra, dict) and "accepted" in info.json_schema_extra:
        return str(info.json_schema_extra["accepted"])
    annotation = info.annotation
    members = [
        member
        for member in getattr(annotation, "__args__", (annotation,))
        if isinstance(member, type) and issubclass(member, Enum)
    ]
    if members:
        return ", ".join(item.value for item in members[0])
    if annotation is bool:
        return "true or false"
    minimum = maximum = exclusive_minimum = None
    for constraint in info.metadata:
        minimum = getattr(constraint, "ge", minimum)
        exclusive_minimum = getattr(constraint, "gt", exclusive_minimum)
        maximum = getattr(constraint, "le", maximum)
    if exclusive_minimum is not None:
        lower = f"above {exclusive_minimum}"
    elif minimum is not None:
        lower = f"{minimum}"
    else:
        lower = None
    if lower is None:
        return "" if maximum is None else f"at most {maximum}"
    if maximum is None:
        return lower if exclusive_minimum is not None else f"{lower} or more"
    return f"{lower} to {maximum}"


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """Return `CARD_LOOKUP_*` variables that name no setting: usually a typo that would be ignored silently."""
    environ = dict(os.environ) if environ is None else environ
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {SECRETS_DIR_VARIABLE}
    return sorted(name for name in environ if name.upper().startswith(ENV_PREFIX) and name.upper() not in known)
