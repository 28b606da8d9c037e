"""``fcnkit explore``: the convolution explorer, a local web page over fcnkit.arith.

Examples::

    fcnkit explore                  # http://127.0.0.1:8765/ until Ctrl-C
    fcnkit explore --port 0 --open  # a free port, opened in the default browser
"""

from __future__ import annotations

import argparse
import webbrowser
from typing import Any

from fcnkit.web.server import make_server

NAME = "explore"
DEFAULT_PORT = 8765


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="interactive convolution explorer in the browser (local web server)",
        description=(
            "Serve a page where the layer's parameters are controls and the views update "
            "live: output size with the Dumoulin & Visin relationship, the kernel sliding "
            "over the (zero-inserted) input, the matrix C / C^T, the receptive field of a "
            "selected pixel through a stack, the gridding map and the inverse problems. "
            "Everything is computed by fcnkit.arith on this machine; nothing is fetched "
            "from the internet. The URL encodes the configuration: share it."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a further name the page may be opened as (the Host header; "
                             "repeatable), e.g. this machine's name with --host 0.0.0.0; "
                             "localhost, 127.0.0.1, [::1] and --host are always allowed")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    server = make_server(args.host, args.port, args.allow_host)
    print(f"fcnkit explore: serving {server.url} (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("fcnkit explore: stopped")
    finally:
        server.server_close()
    return 0
