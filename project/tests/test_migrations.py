"""The migration shares the course database with the labs without touching their history."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from sqlalchemy import create_engine, inspect, text

from imgproc.config import Settings
from imgproc.migrate import alembic_config, upgrade
from shared.settings import sqlalchemy_url

Isolated = Callable[..., Settings]  # the `isolated` fixture


def test_upgrade_and_downgrade_leave_a_labs_alembic_history_alone(isolated: Isolated) -> None:
    url = isolated("migrations").database_url
    engine = create_engine(sqlalchemy_url(url, "psycopg"))
    try:
        with engine.begin() as conn:  # what a lab's `alembic upgrade` leaves in the same database
            conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
        command.downgrade(alembic_config(url), "base")
        assert "imgproc_jobs" not in inspect(engine).get_table_names()
        upgrade(url)
        with engine.connect() as conn:
            ours = conn.execute(text("SELECT version_num FROM imgproc_alembic_version")).scalar()
            theirs = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert ours == "imgproc_0002" and theirs == "0001", (ours, theirs)
        assert "imgproc_jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
