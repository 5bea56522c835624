"""The API matches its own OpenAPI schema: schemathesis against a real API process.

Bounded: a fixed number of generated cases per operation (deterministic), every built-in check
(no 5xx, documented statuses and headers, response schemas, content types, 405 with Allow...).
Half of the uploads are real images (hooks.py), so the happy paths are exercised too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
HOOKS = "tests.schema.hooks"  # importable from PROJECT_DIR
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 40


def test_the_api_matches_its_openapi_schema(api_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{api_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers", "2",
        "--report-dir", str(tmp_path),
        "--no-color",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    print(output[-4000:])
    assert result.returncode == 0, f"schemathesis found problems:\n{output[-6000:]}"
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None, f"no case count in schemathesis's summary:\n{output[-2000:]}"
    generated, passed = int(cases.group(1)), int(cases.group(2))
    print(f"schemathesis: {generated} cases generated, {passed} passed")
    assert generated >= 300 and passed == generated, output[-2000:]
