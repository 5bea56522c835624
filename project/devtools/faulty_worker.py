"""The production worker with injected faults: `celery -A devtools.faulty_worker worker`.

It is `imgproc.worker` with one change made at import, before the pool forks: every job, after
its claim and its `processing` status, first runs `Faults.before_processing()` (the faults come
from the environment; see `devtools.faults`).
"""

from __future__ import annotations

import functools
from typing import Any

from devtools.faults import Faults
from imgproc.jobs import processor
from imgproc.worker import app

__all__ = ["app"]


def install(faults: Faults) -> None:
    """Make every job of this process run `faults.before_processing()` before its image."""
    # The processor calls Pillow's work through its module-level name `process_image`: that
    # name is the seam (the production module has no hook of its own).
    original = getattr(processor, "process_image")  # noqa: B009

    @functools.wraps(original)
    def process_image(*args: Any, **kwargs: Any) -> Any:
        faults.before_processing()
        return original(*args, **kwargs)

    setattr(processor, "process_image", process_image)  # noqa: B010


install(Faults.from_env())
