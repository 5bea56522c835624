"""Apply the Alembic migrations (`python -m imgproc.migrate`), waiting briefly for PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from tenacity import retry, stop_after_attempt, wait_fixed

from imgproc.config import Settings
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


def main() -> None:
    upgrade(Settings().database_url)


if __name__ == "__main__":
    main()
