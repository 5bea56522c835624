"""Schemathesis hooks (SCHEMATHESIS_HOOKS=...): real images in half of the generated uploads.

Random bytes in the `file` field only ever reach the 415 branch; a real JPEG or PNG (of a size
picked from the generated case) reaches parameter checks, de-duplication, storage and the queue.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import schemathesis
from PIL import Image


def _image(seed: int) -> bytes:
    width, height = 8 + seed % 120, 8 + (seed // 7) % 90
    im = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 11) % 256, seed % 256))
    out = io.BytesIO()
    im.save(out, "JPEG" if seed % 2 else "PNG")
    return out.getvalue()


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    # Only a well-formed upload is replaced: a case that breaks the schema on purpose
    # (negative testing) keeps its broken `file`.
    if not isinstance(body, dict) or not isinstance(body.get("file"), bytes | str):
        return body
    seed = int.from_bytes(hashlib.sha256(repr(sorted(body.items())).encode()).digest()[:4], "big")
    if seed % 2 == 0:
        body = {**body, "file": _image(seed)}
    return body
