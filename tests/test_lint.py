"""The template's own Python (hooks, tests, scripts, catalog) passes the linter configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import TEMPLATE_ROOT


def test_template_code_is_ruff_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "--no-cache", "hooks", "scripts", "tests", "catalog"],
                            cwd=TEMPLATE_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
