"""A pytest plugin for test_handouts.py: collect a lab's tests, write their points as JSON.

Loaded with `-p tests.collect_points` next to the grading plugin; the path comes from the
`COLLECT_POINTS_JSON` environment variable.
"""

from __future__ import annotations

import json
import os

import pytest

from shared.grading.plugin import item_task


def pytest_collection_finish(session: pytest.Session) -> None:
    rows = []
    for item in session.items:
        marker = item.get_closest_marker("points")
        if marker is None:
            continue
        rows.append(
            {
                "name": item.name,
                "points": float(marker.args[0]),
                "task": item_task(item),
                "hidden": item.get_closest_marker("hidden") is not None,
            }
        )
    with open(os.environ["COLLECT_POINTS_JSON"], "w") as fh:
        json.dump(rows, fh)
