"""The explorer's HTTP server: the page, its static files and the JSON views, on localhost.

Standard library only (``http.server.ThreadingHTTPServer``). Routes:

* ``GET /`` -> ``static/index.html``; ``GET /static/<name>`` -> a file of ``static/`` (the
  names present in the directory only; nothing else of the file system is reachable).
* ``GET /api/<view>?<query>`` -> ``200`` and the view's JSON (:mod:`fcnkit.web.explore`),
  or ``400`` and ``{"error": "<one line>"}`` for a parameter the user got wrong, ``404``
  for an unknown view, ``414`` for a query longer than :data:`MAX_QUERY_LENGTH`, ``503``
  when :data:`MAX_CONCURRENT` views are already running and none finishes within
  :data:`BUSY_TIMEOUT_S`. A programming error is logged with its traceback and answered
  with ``500``.

The server binds 127.0.0.1 by default. Every response carries a Content-Security-Policy
that allows only the server itself as a source: the page cannot fetch from the internet.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fcnkit.errors import InputError
from fcnkit.jsonio import dumps_strict
from fcnkit.web.explore import VIEWS, view

__all__ = ["BUSY_TIMEOUT_S", "MAX_CONCURRENT", "MAX_QUERY_LENGTH", "ExplorerServer",
           "make_server"]

log = logging.getLogger(__name__)

#: Longest accepted query string (characters): a 32-layer stack fits in a few thousand.
MAX_QUERY_LENGTH = 8192
#: Views computed at the same time; further requests wait.
MAX_CONCURRENT = 4
#: How long a request waits for a free slot before it is answered 503.
BUSY_TIMEOUT_S = 10.0

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_SECURITY_HEADERS = {
    # Only this server may be a source of scripts, styles, images and fetches.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static_files() -> dict[str, bytes]:
    """The files of ``fcnkit/web/static`` by name (read once; the set is fixed)."""
    root = resources.files("fcnkit.web") / "static"
    return {entry.name: entry.read_bytes() for entry in root.iterdir()
            if entry.is_file() and "." + entry.name.rsplit(".", 1)[-1] in _CONTENT_TYPES}


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        for key, value in _SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, dumps_strict(obj, separators=(",", ":")).encode(),
                   "application/json; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        parts = urlsplit(self.path)
        if len(parts.query) > MAX_QUERY_LENGTH:
            self._json(HTTPStatus.REQUEST_URI_TOO_LONG,
                       {"error": f"the query is longer than {MAX_QUERY_LENGTH} characters"})
            return
        path = parts.path
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            body = self.server.static.get(name)
            if body is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no static file {name!r}"})
                return
            suffix = "." + name.rsplit(".", 1)[-1]
            self._send(HTTPStatus.OK, body, _CONTENT_TYPES[suffix], cache=True)
            return
        if path.startswith("/api/"):
            self._api(path[len("/api/"):], parts.query)
            return
        self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {path!r}"})

    def _api(self, name: str, query: str) -> None:
        if name not in VIEWS:
            self._json(HTTPStatus.NOT_FOUND,
                       {"error": f"unknown view {name!r}; one of {', '.join(VIEWS)}"})
            return
        params = parse_qs(query, keep_blank_values=True)
        if not self.server.slots.acquire(timeout=BUSY_TIMEOUT_S):
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the explorer is busy; retry"})
            return
        try:
            result = view(name, params)
        except InputError as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "bad input"
            self._json(HTTPStatus.BAD_REQUEST, {"error": message})
            return
        except Exception:
            log.exception("explorer view %s failed on %r", name, query)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "internal error in the explorer (see the server log)"})
            return
        finally:
            self.server.slots.release()
        self._json(HTTPStatus.OK, result)


class ExplorerServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer serving the explorer; ``url`` is its address.

    Use :func:`make_server` to build one.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.static = _static_files()
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"


def make_server(host: str = "127.0.0.1", port: int = 0) -> ExplorerServer:
    """Bind the explorer (not yet serving: call ``serve_forever()``).

    Args:
        host: address to bind; anything other than a loopback address is served to the
            network, and a warning says so.
        port: TCP port; 0 picks a free one (read it from ``server.url``).

    Raises:
        InputError: the port is out of range or cannot be bound (e.g. already in use).
    """
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(f"the explorer is bound to {host}, reachable from other machines; "
                      "the default 127.0.0.1 keeps it local", stacklevel=2)
    try:
        return ExplorerServer((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                         "another --port or 0 for a free one") from None
