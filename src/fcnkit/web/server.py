"""The explorer's HTTP server: the page, its static files and the JSON views, on localhost.

Standard library only (``http.server.ThreadingHTTPServer``). Routes:

* ``GET /`` -> ``static/index.html``; ``GET /static/<name>`` -> a file of ``static/`` (the
  names present in the directory only; nothing else of the file system is reachable).
* ``GET /api/<view>?<query>`` -> ``200`` and the view's JSON (:mod:`fcnkit.web.explore`),
  or ``400`` and ``{"error": "<one line>"}`` for a parameter the user got wrong, ``404``
  for an unknown view, ``414`` for a query longer than :data:`MAX_QUERY_LENGTH`, ``503``
  when :data:`MAX_CONCURRENT` views are already running and none finishes within
  :data:`BUSY_TIMEOUT_S`, or when a view runs longer than :data:`REQUEST_TIME_S`. A
  programming error is logged with its traceback and answered with ``500``.

Hostile clients are bounded:

* ``Host`` must name the server (``localhost``, ``127.0.0.1``, ``[::1]``, the bound
  address or an extra name given to :func:`make_server`, with the bound port): any other
  is answered ``421``, which defeats DNS rebinding (a page on another origin whose name
  resolves to 127.0.0.1 sends its own name as ``Host``).
* A connection is handed to one of :data:`MAX_WORKERS` threads only once it has sent
  something; one that sends nothing for :data:`READ_TIMEOUT_S` is closed without holding
  a thread, and every read of a request times out after the same delay. At most
  :data:`MAX_CONNECTIONS` connections are open; a further one is answered ``503``.
  Each connection carries one request (``Connection: close``).
* JSON in a query is bounded in nesting and number length before it is parsed, and every
  view's work by :mod:`fcnkit.limits` (the command line's bounds).

The server binds 127.0.0.1 by default. Every response carries a Content-Security-Policy
that allows only the server itself as a source: the page cannot fetch from the internet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fcnkit.errors import InputError, exit_code_for, first_line, warn
from fcnkit.jsonio import dumps_strict
from fcnkit.web.explore import VIEWS, view

__all__ = ["BUSY_TIMEOUT_S", "MAX_CONCURRENT", "MAX_CONNECTIONS", "MAX_QUERY_LENGTH",
           "MAX_WORKERS", "READ_TIMEOUT_S", "REQUEST_TIME_S", "ExplorerServer",
           "allowed_hosts", "make_server"]

log = logging.getLogger(__name__)

#: Longest accepted query string (characters): a 32-layer stack fits in a few thousand.
MAX_QUERY_LENGTH = 8192
#: Views computed at the same time; further requests wait.
MAX_CONCURRENT = 4
#: How long a request waits for a free slot before it is answered 503.
BUSY_TIMEOUT_S = 10.0
#: How long a view may compute before its request is answered 503 (the work bounds of
#: fcnkit.limits keep every view well under a second; this is the backstop).
REQUEST_TIME_S = 10.0
#: Seconds a connection may stay silent: before its first byte, and on every later read.
READ_TIMEOUT_S = 10.0
#: Threads reading requests and answering them (a browser opens about 6 at once).
MAX_WORKERS = 8
#: Connections open at the same time (silent ones included); further ones get 503.
MAX_CONNECTIONS = 256

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
    timeout = READ_TIMEOUT_S  # StreamRequestHandler sets it on the socket: every read

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        # One request per connection: an idle keep-alive connection would hold a worker.
        self.send_header("Connection", "close")
        self.close_connection = True
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
        host = self.headers.get("Host")
        if host is None or host.strip().lower() not in self.server.allowed_hosts:
            self._json(HTTPStatus.MISDIRECTED_REQUEST,
                       {"error": f"Host {host!r} is not this server; open {self.server.url}"})
            return
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
        # The view runs on the compute pool so that this request can be answered after
        # REQUEST_TIME_S whatever the view does; its slot is freed when it really ends.
        future = self.server.compute.submit(view, name, params)
        future.add_done_callback(lambda _: self.server.slots.release())
        try:
            result = future.result(timeout=REQUEST_TIME_S)
        except FutureTimeout:
            log.warning("explorer view %s took longer than %g s on %r", name,
                        REQUEST_TIME_S, query[:200])
            self._json(HTTPStatus.SERVICE_UNAVAILABLE,
                       {"error": f"the view took longer than {REQUEST_TIME_S:g} s; ask for "
                                 "less"})
            return
        except Exception as exc:
            if exit_code_for(exc) is not None:  # the user's error, as the CLI classifies it
                self._json(HTTPStatus.BAD_REQUEST, {"error": first_line(exc)})
                return
            # The traceback goes into the message itself: the command line's log format
            # prints one message per record and would drop a separate exc_info.
            log.error("explorer view %s failed on %r\n%s", name, query[:200],
                      traceback.format_exc().rstrip())
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "internal error in the explorer (see the server log)"})
            return
        self._json(HTTPStatus.OK, result)


class ExplorerServer(HTTPServer):
    """An HTTP server serving the explorer; ``url`` is its address.

    Accepted connections wait in a selector until they are readable (or are closed after
    :data:`READ_TIMEOUT_S`), then one of :data:`MAX_WORKERS` threads reads and answers
    their request. Use :func:`make_server` to build one.
    """

    def __init__(self, address: tuple[str, int], extra_hosts: Iterable[str] = ()) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.static = _static_files()
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self.allowed_hosts = allowed_hosts(address[0], self.server_address[1], extra_hosts)
        self.compute = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="fcnkit-view")
        self._workers = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="fcnkit-http")
        self._open = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._incoming: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._closing = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                            name="fcnkit-http-dispatch")
        self._dispatcher.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Queue an accepted connection for the dispatcher (never blocks the accept loop)."""
        if not self._open.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        self._incoming.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _dispatch(self) -> None:
        """Hand readable connections to the workers; close those silent too long."""
        waiting: dict[Any, tuple[Any, float]] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._closing.is_set():
                events = selector.select(timeout=0.5)
                for key, _ in events:
                    if key.fileobj is self._wake_read:
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(4096)
                        continue
                    selector.unregister(key.fileobj)
                    address, _ = waiting.pop(key.fileobj)
                    self._workers.submit(self._serve, key.fileobj, address)
                while True:
                    try:
                        request, address = self._incoming.get_nowait()
                    except queue.Empty:
                        break
                    waiting[request] = (address, time.monotonic() + READ_TIMEOUT_S)
                    selector.register(request, selectors.EVENT_READ)
                now = time.monotonic()
                for request, (_, deadline) in list(waiting.items()):
                    if deadline < now:
                        selector.unregister(request)
                        del waiting[request]
                        self._close(request)
            for request in waiting:
                self._close(request)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._close(request)

    def _close(self, request: Any) -> None:
        self.shutdown_request(request)
        self._open.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.error("explorer connection from %s failed\n%s", client_address,
                  traceback.format_exc().rstrip())

    def server_close(self) -> None:
        if not hasattr(self, "_dispatcher"):  # the bind failed in HTTPServer.__init__
            super().server_close()
            return
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")
        self._dispatcher.join(timeout=5)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self.compute.shutdown(wait=False, cancel_futures=True)
        self._wake_read.close()
        self._wake_write.close()
        super().server_close()


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values the server answers (lower case, with the port; without
    it too on port 80, as browsers omit the default port).

    ``localhost``, ``127.0.0.1`` and ``[::1]`` always; the bound ``host`` (bracketed when
    it is an IPv6 address) and the names of ``extra`` (``--allow-host``) besides.
    """
    names = {"localhost", "127.0.0.1", "[::1]"}
    for name in (host, *extra):
        name = name.strip().lower()
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        if name:
            names.add(name)
    values = {f"{name}:{port}" for name in names}
    if port == 80:
        values |= names
    return frozenset(values)


def make_server(host: str = "127.0.0.1", port: int = 0,
                extra_hosts: Iterable[str] = ()) -> ExplorerServer:
    """Bind the explorer (not yet serving: call ``serve_forever()``).

    Args:
        host: address to bind; anything other than a loopback address is served to the
            network, and a warning says so.
        port: TCP port; 0 picks a free one (read it from ``server.url``).
        extra_hosts: further names the ``Host`` header may carry (e.g. this machine's
            name when ``host`` is ``0.0.0.0``); see :func:`allowed_hosts`.

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
        warn(f"the explorer is bound to {host}, reachable from other machines; "
             "the default 127.0.0.1 keeps it local")
    try:
        return ExplorerServer((host, port), extra_hosts)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                         "another --port or 0 for a free one") from None
