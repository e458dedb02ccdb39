"""A minimal HTTP/1.1 keep-alive client for the load test and the benchmarks.

A load tool's own cost per request must not be the figure it measures. On the 2-core machines
these run on, aiohttp's client spends about as much CPU per request as the API spends
answering it, on the same cores, so a load test with it measured its clients as much as the
server. This client sends pre-encoded requests on one connection, one at a time, and reads
answers that carry a Content-Length (every answer of the API does); anything else is an error.
It is for traffic we generate ourselves against our own API, never for talking to others.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection broke or the answer was not one this client reads."""


class LeanHttp:
    def __init__(self, base: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def encode(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> bytes:
        """A request, encoded once and sent as often as needed."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one encoded request; HttpError (or TimeoutError) otherwise."""
        try:
            async with asyncio.timeout(self.timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                self._writer.write(request)
                head = await self._reader.readuntil(b"\r\n\r\n")
                status, length, close = _parse_head(head)
                body = await self._reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, whether the server closes the connection) of an answer."""
    status_line, *headers = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError):
        raise HttpError(f"not an HTTP status line: {status_line[:80]!r}") from None
    length: int | None = None
    close = False
    for header in headers:
        name, _, value = header.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            raise HttpError("a chunked answer; this client reads Content-Length only")
    if length is None:
        if status in (204, 304):  # no body, by definition
            return status, 0, close
        raise HttpError("an answer without Content-Length")
    return status, length, close
