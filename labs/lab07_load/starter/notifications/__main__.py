"""Start the notifications service: `python -m notifications` (settings from env or `.env`)."""

import logging
import sys

from notifications.config import get_settings
from notifications.consumer import run


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # pika logs every connection it opens and closes, and each lost one twice, at INFO/ERROR.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
