"""A real uvicorn server on 127.0.0.1 in a background thread, for the service tests."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import uvicorn

from server.app import create_app
from server.connections import uvicorn_config
from server.readiness import wait_until_ready
from server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(settings: Settings):
    """Yield (base_url, app) of a started server; stop it afterwards. Unless a test names a
    precision, the server scores in fp32, so that its numbers can be compared with the
    library's (the service's default, auto, is bf16 on CPUs that have it)."""
    port = free_port()
    update = {"port": port, "host": "127.0.0.1"}
    if "precision" not in settings.model_fields_set:
        update["precision"] = "fp32"
    settings = settings.model_copy(update=update)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, settings.request_read_timeout_s,
                                           settings.max_connections, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 30)
    except RuntimeError:
        server.should_exit = True
        raise
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(15)
