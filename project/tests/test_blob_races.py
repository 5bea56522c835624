"""A failed request's clean-up and an identical upload racing it never lose the blob.

Two requests with the same bytes share one stored file. If one fails (its INSERT did not
happen), it deletes the file unless a job uses it; the other may be between "the file is there"
and the commit of its row. Both interleavings are forced here with real PostgreSQL sessions.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from devtools.samples import encode, photo_like

from imgproc.config import Settings
from imgproc.deps import Resources, resources_of
from imgproc.images.schemas import GrayscaleParams, Operation
from imgproc.jobs import repository as repo
from imgproc.jobs.service import (
    driver_transaction,
    forget_unreferenced,
    insert_using_blob,
    request_key,
)
from imgproc.main import create_app
from imgproc.storage.service import sha256_hex


def job_values(data: bytes) -> dict[str, Any]:
    digest = sha256_hex(data)
    return {
        "id": uuid.uuid4(),
        "operation": "grayscale",
        "params": {},
        "status": "queued",
        "request_key": request_key(digest, Operation.GRAYSCALE, GrayscaleParams()),
        "input_sha256": digest,
        "input_format": "PNG",
        "input_bytes": len(data),
    }


def run(settings: Settings, scenario: Any) -> None:
    async def main() -> None:
        state = resources_of(create_app(settings))
        try:
            await scenario(state)
        finally:
            await state.close()

    asyncio.run(main())


def test_clean_up_waits_for_a_twin_that_is_inserting(isolated: Any) -> None:
    data = encode(photo_like(40, 30, seed=600), "PNG")
    values = job_values(data)

    async def scenario(state: Resources) -> None:
        state.store.put(data)  # written by the request that will fail
        async with state.sessions() as failed, state.sessions() as twin_session:
            # The twin (the request that did not fail): lock taken, file checked, not committed.
            async with driver_transaction(twin_session) as twin:
                row = await insert_using_blob(
                    connection=twin, store=state.store, values=values, data=data
                )
                assert row is not None
                digest = values["input_sha256"]
                clean_up = asyncio.create_task(
                    forget_unreferenced(session=failed, store=state.store, digest=digest)
                )
                await asyncio.sleep(0.5)
                assert not clean_up.done(), "the clean-up must wait for the twin's transaction"
            await clean_up  # runs once the twin's row is committed: it sees the row
        assert state.store.has(values["input_sha256"]), "the twin's input was kept"

    run(isolated("race1"), scenario)


def test_a_twin_after_the_clean_up_writes_the_blob_again(isolated: Any) -> None:
    data = encode(photo_like(40, 30, seed=601), "PNG")
    values = job_values(data)

    async def scenario(state: Resources) -> None:
        state.store.put(data)  # the twin saw this file, so it did not write its own
        async with state.sessions() as failed:  # the failed request
            await forget_unreferenced(
                session=failed, store=state.store, digest=values["input_sha256"]
            )
        assert not state.store.has(values["input_sha256"])
        async with state.sessions() as session, driver_transaction(session) as twin:
            row = await insert_using_blob(
                connection=twin, store=state.store, values=values, data=data
            )
            assert row is not None
        assert state.store.get(values["input_sha256"]) == data, "the twin wrote it again"
        async with state.sessions() as session:
            assert (await session.execute(repo.select_job(values["id"]))).first() is not None

    run(isolated("race2"), scenario)
