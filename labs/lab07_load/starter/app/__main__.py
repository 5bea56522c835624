"""Start the server: `python -m app` (HOST and PORT come from the environment or `.env`)."""

import logging

import uvicorn

from app.config import get_settings
from app.main import app


def main() -> None:
    settings = get_settings()
    # The app's own log lines (e.g. "cache unavailable ...") with time, level and logger.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request it sends at INFO: two lines per quote would make the log, not
    # the network, the bottleneck under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # pika logs every connection it opens and closes, and a lost one (the broker closes idle
    # ones) with two tracebacks; app.broker logs one line of its own instead.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
