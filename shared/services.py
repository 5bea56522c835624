"""Readiness checks for PostgreSQL, Redis and RabbitMQ with errors a student can act on.

`python -m shared.services` is what `make services` runs: it checks each URL a bounded number
of times, starts the containers with `docker compose` when a Docker engine is there, creates the
configured database if the server has no such database yet, and otherwise prints which URL failed
and the commands that would start that service.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

from shared.settings import ServiceSettings, plain_postgres_url


class ServiceUnavailable(RuntimeError):
    """A backing service did not answer; the message says which URL and how to start it."""


@dataclass(frozen=True)
class Service:
    name: str
    compose_service: str
    url: str
    check: Callable[[str], None]
    how_to_start: str


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def check_postgres(url: str, *, connect_timeout: float = 3) -> None:
    """Connect to the server (maintenance database) and run `SELECT 1`."""
    target = _maintenance_url(url)
    with psycopg.connect(target, connect_timeout=int(connect_timeout), autocommit=True) as conn:
        conn.execute("SELECT 1")


def check_redis(url: str, *, connect_timeout: float = 3) -> None:
    """PING the Redis server."""
    client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_amqp(url: str, *, connect_timeout: float = 3) -> None:
    """Open and close a real AMQP connection (not just a TCP port check)."""
    import pika  # imported lazily: only the AMQP labs and this check need it

    params = pika.URLParameters(url)
    params.socket_timeout = connect_timeout
    params.blocked_connection_timeout = connect_timeout
    params.connection_attempts = 1
    conn = pika.BlockingConnection(params)
    conn.close()


def _maintenance_url(url: str) -> str:
    """Return the URL of the `postgres` database on the same server."""
    parts = urlsplit(plain_postgres_url(url))
    return parts._replace(path="/postgres").geturl()


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing. Return True if it was created."""
    name = database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def services(settings: ServiceSettings | None = None) -> list[Service]:
    s = settings or ServiceSettings()
    pg_start = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    redis_start = (
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
    )
    return [
        Service("PostgreSQL", "postgres", s.database_url, check_postgres, pg_start),
        Service("Redis", "redis", s.redis_url, check_redis, redis_start),
        Service("RabbitMQ", "rabbitmq", s.amqp_url, check_amqp, "rabbitmq-server -detached"),
    ]


def wait_for(service: Service, *, attempts: int, delay: float) -> Exception | None:
    """Try `attempts` times; return None when the service answers, else the last error."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            service.check(service.url)
            return None
        except Exception as exc:  # any failure to connect counts as "not ready"
            last = exc
            if attempt + 1 < attempts:
                time.sleep(delay)
    return last


def require(name: str, settings: ServiceSettings | None = None) -> str:
    """Return the URL of service `name` after one check; raise ServiceUnavailable if down."""
    for service in services(settings):
        if service.name.lower() == name.lower():
            error = wait_for(service, attempts=2, delay=0.5)
            if error is not None:
                raise ServiceUnavailable(_explain(service, error))
            return service.url
    raise KeyError(name)


def _explain(service: Service, error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{service.name} does not answer at {_redact(service.url)} ({first_line}).\n"
        f"  Start it with Docker:   docker compose up -d {service.compose_service}\n"
        f"  or on this machine:     {service.how_to_start}\n"
        f"  or point the URL elsewhere in .env (see .env.example)."
    )


def _docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="make sure PostgreSQL, Redis, RabbitMQ answer")
    parser.add_argument("--attempts", type=int, default=3, help="checks per service")
    parser.add_argument("--only", nargs="*", help="service names to check (default: all)")
    args = parser.parse_args(argv)

    wanted = {n.lower() for n in args.only} if args.only else None
    todo = [s for s in services() if wanted is None or s.name.lower() in wanted]
    down = [s for s in todo if wait_for(s, attempts=1, delay=0) is not None]
    attempts = args.attempts
    if down and _docker_engine_available():
        names = [s.compose_service for s in down]
        print(f"starting with docker compose: {' '.join(names)}")
        subprocess.run(["docker", "compose", "up", "-d", "--wait", *names], check=False)
        attempts = max(attempts, 30)  # containers may still be warming up behind healthchecks

    failed = False
    for service in todo:
        error = wait_for(service, attempts=attempts if service in down else 1, delay=1.0)
        if error is None:
            print(f"  ok  {service.name:<10} {_redact(service.url)}")
        else:
            failed = True
            print(f"  --  {_explain(service, error)}", file=sys.stderr)
    if failed:
        return 1
    if any(s.name == "PostgreSQL" for s in todo):
        url = ServiceSettings().database_url
        if ensure_database(url):
            print(f"  created database {database_name(url)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
