"""Static checks: no undefined names, unused imports or unused variables (ruff's pyflakes rules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyflakes_rules_pass():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "worker", "schemas", "simulator", "tests", "bench", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
