"""The settings table in docs/settings.md matches worker/settings.py."""

from __future__ import annotations

import subprocess
import sys

from scripts.settings_table import OUTPUT, REGENERATE_COMMAND, ROOT, render_document, render_table
from worker.settings import Settings


def test_settings_doc_is_current():
    current = OUTPUT.read_text(encoding="utf-8")
    assert render_document(current) == current, f"docs/settings.md is out of date; run: {REGENERATE_COMMAND}"


def test_table_lists_every_setting():
    table = render_table()
    for name in Settings.model_fields:
        assert f"`CARD_LOOKUP_{name.upper()}`" in table, f"{name} is missing from the table"


def test_table_marks_secrets():
    rows = {row.split("|")[1].strip(): row for row in render_table().splitlines()[2:]}
    assert rows["`CARD_LOOKUP_API_PASSWORD`"].rstrip().endswith("| yes |")
    assert rows["`CARD_LOOKUP_KAFKA_SASL_PASSWORD`"].rstrip().endswith("| yes |")
    assert rows["`CARD_LOOKUP_API_LOGIN`"].rstrip().endswith("| no |")


def test_check_flag_reports_stale_doc(tmp_path, monkeypatch):
    stale = OUTPUT.read_text(encoding="utf-8").replace("`CARD_LOOKUP_HTTP_PORT`", "`CARD_LOOKUP_HTTP_PORT_OLD`")
    copy = tmp_path / "settings.md"
    copy.write_text(stale, encoding="utf-8")
    script = (
        "import sys, scripts.settings_table as table; from pathlib import Path; "
        f"table.OUTPUT = Path({str(copy)!r}); table.ROOT = Path({str(tmp_path)!r}); "
        "sys.argv = ['settings_table.py', '--check']; table.main()"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert REGENERATE_COMMAND in result.stderr
