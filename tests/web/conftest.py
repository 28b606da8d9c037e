"""A live explorer on a free localhost port, shared by the HTTP and browser tests."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from fcnkit.web.server import make_server


@pytest.fixture(scope="session")
def explorer():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def http_get():
    """``http_get(server, path, params)`` -> (status, headers, JSON or bytes)."""
    return _get


def _get(server, path, params=None):
    """(status, headers, parsed JSON or bytes) of a GET on the explorer."""
    url = server.url.rstrip("/") + path
    if params is not None:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    if headers.get("Content-Type", "").startswith("application/json"):
        return status, headers, json.loads(body)
    return status, headers, body
