"""scripts/lookup.py: the README's way to send one request by hand."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.kafka


async def run_lookup(env: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/lookup.py", *arguments,
        cwd=ROOT, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_lookup_prints_reply(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    code, stdout, stderr = await run_lookup(topics.worker_env(), "1000000000016", "9999999999999")
    assert code == 0, stderr
    reply = json.loads(stdout)
    assert [result["status"] for result in reply["results"]] == ["found", "not_found"]


async def test_lookup_without_worker_times_out(topics):
    code, _stdout, stderr = await run_lookup(topics.worker_env(), "--timeout-s", "2", "1000000000016")
    assert code == 1
    assert "is the worker running?" in stderr
