"""Slow clients: a connection must deliver a complete request within a deadline, and the number
of connections is bounded.

uvicorn resets its keep-alive timer on every byte received, so a client sending half a header,
a byte at a time, holds a connection (and a file descriptor) for as long as it likes. Here the
HTTP protocol uvicorn would pick (httptools, else h11) is subclassed: a timer armed when a
connection opens, and again after each response, closes the connection when it fires unless
the request that followed has arrived whole (headers and body). Time the application spends
on a complete request is not counted: `--request-timeout-s` bounds that (504). Connections
beyond `--max-connections` are answered 503 by uvicorn's `limit_concurrency`.

Header size: httptools (uvicorn's faster parser) sets no bound on a request's header bytes, so
a client could send hundreds of MiB of headers inside the read deadline, before any route (or
the bearer token check) sees the request. The protocol counts the bytes a request's head takes
and answers 431 and closes the connection past MAX_HEADER_BYTES.
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

MAX_HEADER_BYTES = 64 * 1024  # request line and headers of one request
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
              b"content-length: 52\r\nconnection: close\r\n\r\n"
              b'{"detail": "request headers exceed 65536 bytes"}    ')


def deadline_protocol(read_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with a request-read deadline of `read_timeout_s` seconds."""

    class DeadlineHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_read_deadline()

        def data_received(self, data: bytes) -> None:
            reading_head = self.cycle is self._cycle_at_arming  # no new request's headers complete yet
            if reading_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # still inside the head after this chunk (a chunk that completed the head may carry body too)
            if reading_head and self.cycle is self._cycle_at_arming and self._head_bytes > MAX_HEADER_BYTES \
                    and not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_read_deadline()  # the next request on this connection gets the same time

        def connection_lost(self, exc) -> None:
            self._disarm_read_deadline()
            super().connection_lost(exc)

        def _arm_read_deadline(self) -> None:
            self._disarm_read_deadline()
            self._cycle_at_arming = self.cycle
            self._head_bytes = 0
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
