"""Invalid settings stop the worker at start with a message naming the variable and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"project_timezone": "Mars/Olympus"}, "CARD_LOOKUP_PROJECT_TIMEZONE='Mars/Olympus'"),
        ({"batch_max_cards": 1001}, "CARD_LOOKUP_BATCH_MAX_CARDS=1001"),
        ({"batch_max_cards": 0}, "(accepted: 1 to 1000)"),
        ({"api_connect_timeout_s": 0}, "(accepted: above 0)"),
        ({"create_topics": "maybe"}, "(accepted: true or false)"),
        ({"log_format": "xml"}, "'json' or 'text'"),
        ({"api_base_url": "ftp://example"}, "not an http(s) URL"),
        ({"api_min_concurrency": 9, "api_max_concurrency": 4}, "CARD_LOOKUP_API_MIN_CONCURRENCY (9) is above"),
        ({"kafka_security_protocol": "SASL_SSL"}, "needs CARD_LOOKUP_KAFKA_SASL_MECHANISM"),
    ],
)
def test_invalid_setting_named_in_message(overrides, expected):
    with pytest.raises(SettingsError) as failure:
        load_settings(**overrides)
    assert expected in str(failure.value)


def test_password_value_never_echoed():
    with pytest.raises(SettingsError) as failure:
        load_settings(api_password=["not", "a", "string"])
    assert "not" not in str(failure.value).replace("CARD_LOOKUP", "")


def test_secret_read_from_secrets_dir(tmp_path, monkeypatch):
    (tmp_path / "card_lookup_api_password").write_text("from-a-file")
    monkeypatch.setenv("CARD_LOOKUP_SECRETS_DIR", str(tmp_path))
    assert load_settings().api_password.get_secret_value() == "from-a-file"


def test_worker_exits_with_clear_message_on_bad_setting():
    env = {**os.environ, "CARD_LOOKUP_BATCH_LINGER_MS": "soon"}
    result = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CARD_LOOKUP_BATCH_LINGER_MS='soon'" in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelt_variable_reported():
    from worker.settings import unknown_variables

    environ = {"CARD_LOOKUP_BATCH_MAXCARDS": "5", "CARD_LOOKUP_LOG_LEVEL": "INFO", "CARD_LOOKUP_SECRETS_DIR": "/run", "PATH": "/bin"}
    assert unknown_variables(environ) == ["CARD_LOOKUP_BATCH_MAXCARDS"]


def test_worker_warns_about_misspelt_variable():
    env = {**os.environ, "CARD_LOOKUP_BATCH_MAXCARDS": "5", "CARD_LOOKUP_LOG_FORMAT": "text", "CARD_LOOKUP_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        first_line = process.stdout.readline()
    finally:
        process.kill()
        process.wait(timeout=30)
    assert "ignoring CARD_LOOKUP_BATCH_MAXCARDS" in first_line
