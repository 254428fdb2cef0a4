"""Slow clients: a connection must deliver a complete request within a deadline, and the number
of connections is bounded.

uvicorn resets its keep-alive timer on every byte received, so a client sending half a header,
a byte at a time, holds a connection (and a file descriptor) for as long as it likes. Here the
HTTP protocol uvicorn would pick (httptools, else h11) is subclassed: a timer armed when a
connection opens, and again after each response, closes the connection when it fires unless
the request that followed has arrived whole (headers and body). Time the application spends
on a complete request is not counted: `--request-timeout-s` bounds that (504). Connections
beyond `--max-connections` are answered 503 by uvicorn's `limit_concurrency`.
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol


def deadline_protocol(read_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with a request-read deadline of `read_timeout_s` seconds."""

    class DeadlineHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_read_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_read_deadline()  # the next request on this connection gets the same time

        def connection_lost(self, exc) -> None:
            self._disarm_read_deadline()
            super().connection_lost(exc)

        def _arm_read_deadline(self) -> None:
            self._disarm_read_deadline()
            self._cycle_at_arming = self.cycle
            self._read_deadline = self.loop.call_later(read_timeout_s, self._read_deadline_passed)

        def _disarm_read_deadline(self) -> None:
            handle = getattr(self, "_read_deadline", None)
            if handle is not None:
                handle.cancel()
                self._read_deadline = None

        def _read_deadline_passed(self) -> None:
            self._read_deadline = None
            new_request = self.cycle is not None and self.cycle is not self._cycle_at_arming
            if new_request and not self.cycle.more_body:
                return  # received whole; the application's time is the request timeout's
            if not self.transport.is_closing():
                self.transport.close()

    return DeadlineHTTPProtocol


def uvicorn_config(app, host: str, port: int, read_timeout_s: float, max_connections: int, **kwargs) -> uvicorn.Config:
    """The uvicorn configuration the service runs with (the CLI and the tests alike)."""
    return uvicorn.Config(app, host=host, port=port, http=deadline_protocol(read_timeout_s),
                          limit_concurrency=max_connections, **kwargs)
