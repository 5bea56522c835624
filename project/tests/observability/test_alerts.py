"""The alert rules (docker/prometheus/rules/): valid for Prometheus, and unit-tested with promtool.

`promtool test rules` replays made-up series through the rules and compares the alerts that
fire, with their labels and annotations, against the test file's expectations.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROM_DIR = REPO / "docker" / "prometheus"
RULES = PROM_DIR / "rules" / "imgproc-alerts.yml"
TESTS = PROM_DIR / "tests" / "imgproc-alerts.test.yml"
REQUIRED_ALERTS = {
    "ImgprocNoWorkerUp",
    "ImgprocQueueGrowing",
    "ImgprocQueuedJobTooOld",
    "ImgprocApiErrorRatioHigh",
    "ImgprocApiLatencyP99High",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=PROM_DIR
    )


def test_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in result.stdout


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    defined = {rule["alert"] for group in groups for rule in group["rules"]}
    assert defined == REQUIRED_ALERTS
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == REQUIRED_ALERTS, f"never seen firing: {REQUIRED_ALERTS - fired}"
    assert silent == REQUIRED_ALERTS, f"never seen staying silent: {REQUIRED_ALERTS - silent}"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("> 300", "> 3000"),  # the reconciler's bound
        ("> 0.05", "> 0.5"),  # the error ratio
        ("for: 2m", "for: 20m"),  # how long no worker may be up
    ],
)
def test_the_unit_tests_catch_a_changed_threshold(
    promtool: str, tmp_path: Path, before: str, after: str
) -> None:
    """The tests pin the thresholds: a rule file with one changed fails them."""
    text = RULES.read_text()
    assert before in text
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(text.replace(before, after, 1))
    (tmp_path / "tests").mkdir()
    shutil.copy(TESTS, tmp_path / "tests" / TESTS.name)
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests" / TESTS.name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, f"changing {before!r} to {after!r} went unnoticed"
