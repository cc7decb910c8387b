"""``python -m loopml.server``: run the platform service with uvicorn.

Reads :class:`~loopml.settings.Settings` from the environment and config file (that is
how ``loopml up`` configures it). Stops cleanly on SIGTERM and SIGINT; running jobs
are not touched (they belong to the Ray cluster and are picked up again on start).
"""

from __future__ import annotations

import logging

import uvicorn

from loopml.server.app import create_app
from loopml.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
