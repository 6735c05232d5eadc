"""Kafka connection options shared by the FastStream broker and the admin client."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from worker.settings import SaslMechanism, SecurityProtocol, Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        return None
    return create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
    )


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol and SASL mechanism."""
    context = ssl_context(settings)
    protocol = settings.kafka_security_protocol
    if protocol is SecurityProtocol.PLAINTEXT:
        return None
    if protocol is SecurityProtocol.SSL:
        return BaseSecurity(ssl_context=context, use_ssl=True)

    username = settings.kafka_sasl_username or ""
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    use_ssl = protocol is SecurityProtocol.SASL_SSL
    security_class = {
        SaslMechanism.PLAIN: SASLPlaintext,
        SaslMechanism.SCRAM_SHA_256: SASLScram256,
        SaslMechanism.SCRAM_SHA_512: SASLScram512,
    }[settings.kafka_sasl_mechanism or SaslMechanism.PLAIN]
    return security_class(username, password, ssl_context=context, use_ssl=use_ssl)


def admin_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (the admin client) with the same connection settings."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options
