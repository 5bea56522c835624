"""Start the server: `python -m app` (HOST and PORT come from the environment or `.env`)."""

import logging

from werkzeug.serving import run_simple

from app.config import get_settings
from app.main import app


def main() -> None:
    settings = get_settings()
    # Werkzeug logs every request at INFO; keep the console as quiet as uvicorn's "warning".
    logging.getLogger("werkzeug").setLevel(settings.log_level.upper())
    run_simple(settings.host, settings.port, app, threaded=True)


if __name__ == "__main__":
    main()
