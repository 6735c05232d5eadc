# syntax=docker/dockerfile:1
#
# Container image of the card-lookup worker.
#
#   docker build -t card-lookup-worker:0.1.0 .
#
# The builder stage builds the project's wheel and installs it with its
# dependencies into /opt/venv. The runtime stage copies only that venv onto a
# fresh slim image, so no compiler, pip cache, source tree or test ends up in
# the image. Both stages must use the same base image, because the venv's
# python is a symlink to the base image's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The venv has no pip of its own: the builder's pip installs into it through
# --python, so the runtime image carries no package installer.
RUN python -m venv --without-pip /opt/venv

# Only what the wheel is built from. The simulator package is an optional
# extra for local runs and stays out of the image.
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY schemas ./schemas

# The dependencies are installed at the versions pinned in pyproject.toml.
# pip compiles the installed modules to bytecode here, because the runtime
# root filesystem is read-only and Python could not write that cache later.
# The otlp extra adds the OTLP trace exporter; tracing stays off unless the
# OTEL_* variables turn it on.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/venv/bin/python install "$(ls /wheels/*.whl)[otlp]"


FROM ${PYTHON_IMAGE} AS runtime

ARG APP_VERSION=0.1.0
LABEL org.opencontainers.image.title="card-lookup-worker" \
      org.opencontainers.image.description="Kafka worker that looks up CareCloud cards in merged batches" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed UID/GID, so Kubernetes can check runAsNonRoot and match runAsUser
# and fsGroup to it without reading /etc/passwd.
RUN groupadd --system --gid 10001 worker \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin worker

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CARD_LOOKUP_LOG_FORMAT=json \
    CARD_LOOKUP_HTTP_HOST=0.0.0.0 \
    CARD_LOOKUP_HTTP_PORT=8000

# An empty working directory: the settings loader reads `.env` from here, and
# nothing must be found unless an operator mounts one.
WORKDIR /app

USER 10001:10001

EXPOSE 8000

# Runs urllib from the standard library, because the slim image has no curl.
# urlopen raises on a non-2xx status and on a refused connection, and either
# makes python exit 1. The probe fails when CARD_LOOKUP_HTTP_PORT is 0, which
# disables the worker's HTTP server.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('CARD_LOOKUP_HTTP_PORT', '8000'), timeout=4)"]

# The worker runs as PID 1 with no init process. That is safe because it
# installs its own SIGTERM handler before it connects (the kernel ignores an
# unhandled SIGTERM sent to PID 1) and starts no child processes that would
# need reaping.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/card-lookup-worker"]
