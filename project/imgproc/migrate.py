"""`python -m imgproc.migrate`: the Alembic migrations (waiting briefly for PostgreSQL), and the
data directory's layout."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from tenacity import retry, stop_after_attempt, wait_fixed

from imgproc.config import Settings
from imgproc.storage.backend import open_store
from imgproc.storage.service import ContentStore
from shared.services import check_postgres

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


@retry(stop=stop_after_attempt(10), wait=wait_fixed(1), reraise=True)
def _wait_for_postgres(url: str) -> None:
    check_postgres(url)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision`."""
    _wait_for_postgres(database_url)
    command.upgrade(alembic_config(database_url), revision)


def migrate_storage(data_dir: Path) -> int:
    """Bring the content-addressed store to the current layout; return the files moved."""
    return ContentStore(data_dir).migrate_layout()


def prepare_storage(settings: Settings) -> int:
    """Bring the configured store (STORAGE_URL) to the current layout: the file store's
    directories, or the S3 bucket created if missing; return the files moved."""
    return open_store(settings, fsync=True).prepare()


def main() -> None:
    settings = Settings()
    upgrade(settings.database_url)
    prepare_storage(settings)


if __name__ == "__main__":
    main()
