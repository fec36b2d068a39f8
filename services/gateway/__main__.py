"""`python -m services.gateway`: serve the HTTP API on HTTP_HOST:HTTP_PORT until SIGINT or SIGTERM."""

import logging
import signal

import uvicorn

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # the broker is started and the port is listening
            await self.config.app.caught_up()  # the audit projection has read gateway.audit (/readyz says so too)
            logging.getLogger("gateway").info("service ready: gateway on http://%s:%d", self.config.host,
                                              self.config.port)


if __name__ == "__main__":
    settings = GatewaySettings()
    app = create_app(settings)
    # access_log off: uvicorn would log raw paths, which hold ID numbers; api/limits.py logs route templates.
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then restores the previous handlers and raises
    # the signal again; handlers that do nothing make that a clean exit 0, like the other services.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    _Server(uvicorn.Config(app, host=settings.http_host, port=settings.http_port, access_log=False,
                           log_config=None, lifespan="on")).run()
