"""The explorer's HTTP API: valid and invalid requests, limits, concurrency.

Oracles: PyTorch itself (output sizes; the matrix view times a weight reproduces
F.conv2d / F.conv_transpose2d; input gradients give the receptive-field region) and
fcnkit.arith's own report functions where the view only transports them.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from fcnkit import limits
from fcnkit.arith.layer import describe_layer
from fcnkit.web import server as server_module
from fcnkit.web.explore import VIEWS
from fcnkit.web.server import MAX_QUERY_LENGTH, MAX_WORKERS, allowed_hosts


def layer_params(**kw):
    return {key: str(value) for key, value in kw.items()}


def test_page_and_static_files_are_served_with_a_strict_policy(explorer, http_get):
    status, headers, body = http_get(explorer, "/")
    assert status == 200 and b"fcnkit explore" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "style.css", "favicon.svg"):
        status, _, _ = http_get(explorer, f"/static/{name}")
        assert status == 200, name


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py",
                                  "/static/explore.py", "/etc/passwd", "/api"])
def test_nothing_outside_static_is_reachable(explorer, http_get, path):
    status, _, body = http_get(explorer, path)
    assert status == 404 and "error" in body


def test_layer_view_matches_describe_layer(explorer, http_get):
    status, _, body = http_get(explorer, "/api/layer",
                               layer_params(size=5, kernel=3, stride=2, padding=1))
    assert status == 200
    assert body["layer"] == describe_layer(size=5, kernel=3, stride=2, padding=1)
    assert body["relationship"]["number"] == 6
    conv = nn.Conv2d(1, 1, 3, 2, 1)
    assert body["layer"]["output_size"] == conv(torch.zeros(1, 1, 5, 5)).shape[-1]


@pytest.mark.parametrize(("params", "message"), [
    ({"size": "3", "kernel": "9"}, "does not fit"),
    ({"size": "x", "kernel": "3"}, "size: expected an integer"),
    ({"kernel": "3"}, "size: missing"),
    ({"size": "5", "kernel": "3", "kind": "deconv"}, "kind must be one of"),
    ({"size": "5", "kernel": "3", "padding": "1", "convention": "tensorflow"}, "'same' or 'valid'"),
    ({"size": "5", "kernel": "3", "output_padding": "1"}, "output_padding applies only"),
    ({"size": "0", "kernel": "3"}, "size must be >= 1"),
])
def test_invalid_layer_is_a_400_with_one_line(explorer, http_get, params, message):
    status, _, body = http_get(explorer, "/api/layer", params)
    assert status == 400
    assert message in body["error"] and "\n" not in body["error"]


def test_unknown_view_is_404(explorer, http_get):
    status, _, body = http_get(explorer, "/api/nothing", {})
    assert status == 404 and "unknown view" in body["error"]


@settings(max_examples=25)
@given(kind=st.sampled_from(["conv", "conv_transpose"]), i=st.integers(1, 6),
       k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2),
       a=st.integers(0, 2))
def test_matrix_times_a_weight_is_pytorch(explorer, http_get, kind, i, k, s, p, d, a):
    """Row r of C (or Cᵀ) holds tap numbers: with weight w it is output pixel r of torch."""
    if kind == "conv":
        a = 0
    x = torch.arange(1.0, i * i + 1).reshape(1, 1, i, i)
    w = torch.linspace(-1, 1, k * k).reshape(1, 1, k, k) + 0.1 * torch.arange(k * k).reshape(
        1, 1, k, k)
    try:
        if kind == "conv":
            expected = F.conv2d(x, w, stride=s, padding=p, dilation=d)
        else:
            expected = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=a,
                                          dilation=d)
    except RuntimeError:
        expected = None
    status, _, body = http_get(explorer, "/api/matrix", layer_params(
        kind=kind, size=i, kernel=k, stride=s, padding=p, dilation=d, output_padding=a))
    if expected is None or expected.shape[-1] < 1:
        assert status == 400
        return
    if status == 400:  # only the size limit may refuse a geometry PyTorch accepts
        assert "limit" in body["error"]
        return
    matrix = np.array(body["matrix"])
    weights = np.concatenate([[0.0], w.flatten().numpy()])
    values = weights[matrix] @ x.flatten().numpy()
    assert body["shape"] == [expected.numel(), i * i]
    np.testing.assert_allclose(values, expected.flatten().numpy(), rtol=1e-5, atol=1e-5)


def test_matrix_limit(explorer, http_get):
    status, _, body = http_get(explorer, "/api/matrix", layer_params(size=40, kernel=3))
    assert status == 400 and f"limit {limits.MAX_MATRIX_ENTRIES}" in body["error"]


def test_animation_view(explorer, http_get):
    status, _, body = http_get(explorer, "/api/animation", layer_params(
        kind="conv_transpose", size=3, kernel=3, stride=2, padding=1, output_padding=1))
    assert status == 200
    out = nn.ConvTranspose2d(1, 1, 3, 2, 1, 1)(torch.zeros(1, 1, 3, 3)).shape[-1]
    assert body["output_shape"] == [out, out]
    cells = np.array(body["cells"])
    # 3 input pixels with s - 1 = 1 zero between them: 5 cells, inserted zeros in between.
    assert (cells == body["kinds"]["input"]).sum() == 9
    assert (cells == body["kinds"]["inserted_zero"]).sum() > 0
    assert len(body["taps"][0][0]) == 9


def test_animation_limit_is_the_cli_limit(explorer, http_get):
    status, _, body = http_get(explorer, "/api/animation", layer_params(size=30, kernel=3))
    assert status == 400 and str(limits.MAX_ANIMATION_FRAMES) in body["error"]


def _torch_stack(layers):
    modules = []
    for layer in layers:
        k, s, p, d = (layer.get(key, default) for key, default in
                      (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)))
        if layer["kind"] == "pool":
            modules.append(nn.AvgPool2d(k, s, p))  # MaxPool's geometry, every input counts
        elif layer["kind"] == "conv_transpose":
            modules.append(nn.ConvTranspose2d(1, 1, k, s, p, layer.get("output_padding", 0),
                                              dilation=d, bias=False))
        else:
            modules.append(nn.Conv2d(1, 1, k, s, p, d, bias=False))
    net = nn.Sequential(*modules)
    for param in net.parameters():
        nn.init.constant_(param, 1.0)
    return net


@pytest.mark.parametrize("layers", [
    [{"kind": "conv", "kernel": 3, "padding": 1}, {"kind": "pool", "kernel": 2, "stride": 2},
     {"kind": "conv", "kernel": 3, "padding": 2, "dilation": 2}],
    [{"kind": "conv", "kernel": 5, "stride": 2}, {"kind": "conv", "kernel": 3, "stride": 2}],
    [{"kind": "conv", "kernel": 3, "stride": 2, "padding": 1},
     {"kind": "conv_transpose", "kernel": 4, "stride": 2, "padding": 1}],
])
def test_stack_region_is_where_the_gradient_reaches(explorer, http_get, layers):
    """Inside the input the region of a direct stack is exactly the gradient's support
    (ReceptiveField.bounds); at the border (padding) or through a transposed layer (a
    fractional equivalent) it contains the support."""
    size = 24
    net = _torch_stack(layers)
    direct = all(layer["kind"] != "conv_transpose" for layer in layers)
    for row, col, exact in ((3, 3, direct), (0, 0, False)):
        status, _, body = http_get(explorer, "/api/stack", {
            "size": str(size), "layers": json.dumps(layers), "row": str(row), "col": str(col)})
        assert status == 200, body
        x = torch.ones(1, 1, size, size, requires_grad=True)
        y = net(x)
        assert body["map_sizes"][-1] == y.shape[-1]
        y[0, 0, row, col].backward()
        rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
        region = body["regions"][0]
        support = [int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())]
        bounds = [*region["rows"], *region["cols"]]
        if exact:
            assert bounds == support
        else:
            assert bounds[0] <= support[0] <= support[1] <= bounds[1]
            assert bounds[2] <= support[2] <= support[3] <= bounds[3]


@pytest.mark.parametrize(("params", "message"), [
    ({"size": "8", "layers": "[{"}, "not valid JSON"),
    ({"size": "8", "layers": "[]"}, "non-empty"),
    ({"size": "8", "layers": '[{"kind": "conv", "kernel": 3, "colour": 1}]'}, "unknown keys"),
    ({"size": "4", "layers": '[{"kind": "conv", "kernel": 3}, {"kind": "conv", "kernel": 3}]'},
     "layers[1]"),
    ({"size": "8", "layers": json.dumps([{"kind": "conv", "kernel": 1}] * 40)}, "limit 32"),
    ({"size": "8", "layers": '[{"kind": "conv", "kernel": 3}]', "row": "9"}, "outside"),
])
def test_stack_errors(explorer, http_get, params, message):
    status, _, body = http_get(explorer, "/api/stack", params)
    assert status == 400 and message in body["error"]


def test_gridding_view_and_limit(explorer, http_get):
    status, _, body = http_get(explorer, "/api/gridding", {"rates": "2,4,8", "kernel": "3"})
    assert status == 200 and body["verdict"] == "gridding" and body["holes"] > 0
    assert np.array(body["coverage"]).shape == (29, 29)
    assert body["suggestions"], "a hole-free schedule with the same receptive field"
    for suggestion in body["suggestions"]:
        _, _, check = http_get(explorer, "/api/gridding",
                               {"rates": ",".join(map(str, suggestion["rates"]))})
        assert check["holes"] == 0 and check["receptive_field"] >= 29
    status, _, body = http_get(explorer, "/api/gridding", {"rates": "1,100"})
    assert status == 400 and "limit" in body["error"]
    status, _, body = http_get(explorer, "/api/gridding", {"rates": "1,a"})
    assert status == 400 and "rates" in body["error"]


def test_inverse_view_answers_are_what_pytorch_does(explorer, http_get):
    status, _, body = http_get(explorer, "/api/inverse", layer_params(
        size=7, target=4, kernel=3, stride=2, padding=1))
    assert status == 200
    low, high = body["conv_padding"]["padding"]
    for p in range(low, high + 1):
        assert F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), stride=2,
                        padding=p).shape[-1] == 4
    assert "reachable output sizes are [13, 14]" in body["transposed_output_padding"]["error"]
    status, _, body = http_get(explorer, "/api/inverse", layer_params(
        size=4, target=7, kernel=3, stride=2, padding=1))
    a = body["transposed_output_padding"]["output_padding"]
    assert F.conv_transpose2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), stride=2,
                              padding=1, output_padding=a).shape[-1] == 7
    low, high = body["conv_padding"]["padding"]  # padding 6 "upsamples" 4 -> 7: legal
    assert F.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), stride=2,
                    padding=low).shape[-1] == 7


def test_query_length_is_bounded(explorer, http_get):
    status, _, body = http_get(explorer, "/api/layer", {"size": "5", "kernel": "3",
                                                        "pad": "x" * MAX_QUERY_LENGTH})
    assert status == 414 and "longer than" in body["error"]


def test_input_size_is_bounded(explorer, http_get):
    status, _, body = http_get(explorer, "/api/layer", {"size": str(10**9), "kernel": "3"})
    assert status == 400 and "limit" in body["error"]


def test_concurrent_requests_give_the_sequential_answers(explorer, http_get):
    requests = []
    for size in range(6, 14):
        requests.append(("/api/layer", layer_params(size=size, kernel=3, stride=2, padding=1)))
        requests.append(("/api/matrix", layer_params(size=size, kernel=3, stride=2)))
        requests.append(("/api/gridding", {"rates": f"1,2,{size % 5 + 1}"}))
        requests.append(("/api/layer", layer_params(size=size, kernel=size + 3)))  # a 400
    sequential = [http_get(explorer, path, params)[::2] for path, params in requests]
    with ThreadPoolExecutor(max_workers=12) as pool:
        concurrent = list(pool.map(lambda r: http_get(explorer, *r)[::2], requests * 2))
    assert concurrent == sequential * 2


def test_cli_explore_refuses_a_busy_or_bad_port(explorer, capsys):
    from fcnkit.cli import main

    port = explorer.server_address[1]
    assert main(["explore", "--port", str(port)]) == 2  # taken by the fixture's server
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err
    assert main(["explore", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


# ------------------------------------------------------------------ hostile clients


def _raw_request(server, host_line, path="/api/layer?size=5&kernel=3"):
    """Status line of a GET sent on a raw socket with the given Host header line."""
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\n{host_line}\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("host_line", ["Host: evil.example", "Host: evil.example:{port}",
                                       "Host: 127.0.0.1:1", "Host: localhost.evil.example",
                                       ""])
def test_a_foreign_host_is_refused(explorer, host_line):
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its name.
    line = host_line.format(port=explorer.server_address[1])
    status, body = _raw_request(explorer, line)
    assert status == 421 and b'"error"' in body and b'"layer"' not in body


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "LOCALHOST"])
def test_the_servers_own_names_are_answered(explorer, name):
    status, body = _raw_request(explorer, f"Host: {name}:{explorer.server_address[1]}")
    assert status == 200 and b'"output_size":3' in body


def test_allowed_hosts_take_the_bound_address_and_extra_names():
    hosts = allowed_hosts("::1", 8765, ["Box.Lan"])
    assert {"[::1]:8765", "localhost:8765", "box.lan:8765"} <= hosts
    assert "box.lan" not in hosts and "evil.example:8765" not in hosts
    assert "localhost" in allowed_hosts("127.0.0.1", 80)  # browsers omit port 80


@pytest.mark.slow  # waits for the server's idle timeout: seconds
def test_idle_connections_hold_no_thread_and_are_closed(explorer, http_get, monkeypatch):
    monkeypatch.setattr(server_module, "READ_TIMEOUT_S", 1.0)
    port = explorer.server_address[1]
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4 * MAX_WORKERS)]
    try:
        start = time.monotonic()
        status, _, body = http_get(explorer, "/api/layer", layer_params(size=5, kernel=3))
        assert status == 200 and body["layer"]["output_size"] == 3
        assert time.monotonic() - start < 3
        assert threading.active_count() <= threads + MAX_WORKERS
        # silent for READ_TIMEOUT_S: the server closes them (recv sees the end, b"")
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b""
        assert time.monotonic() - start < 5
    finally:
        for conn in idle:
            conn.close()


def test_a_stalled_request_times_out(explorer, monkeypatch):
    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    with socket.create_connection(("127.0.0.1", explorer.server_address[1])) as conn:
        conn.sendall(b"GET /api/layer?size=5&kernel=3 HTTP/1.1\r\n")  # headers never end
        conn.settimeout(10)
        start = time.monotonic()
        assert conn.recv(65536) == b""
        assert time.monotonic() - start < 5


def test_oversize_animation_is_refused_as_the_cli_refuses_it(explorer, http_get, tmp_path,
                                                             capsys):
    from fcnkit.cli import main

    # 4 frames (a 2x2 output) over a 3000x3000 grid: 9 M cells per frame.
    params = {"size": "3000", "kernel": "1000", "dilation": "3"}
    status, _, body = http_get(explorer, "/api/animation", params)
    assert status == 400 and f"limit {limits.MAX_ANIMATION_CELL_DRAWS}" in body["error"]
    assert main(["animate", "--size", "3000", "--kernel", "1000", "--dilation", "3", "-o",
                 str(tmp_path / "a.gif")]) == 2
    assert body["error"] in capsys.readouterr().err
    status, _, _ = http_get(explorer, "/api/animation", {"size": "5", "kernel": "3",
                                                        "padding": "same"})
    assert status == 400


@pytest.mark.parametrize(("params", "message"), [
    ({"size": "8", "layers": "[" * 1300 + "]" * 1300}, "nested more than"),
    ({"size": "8", "layers": '[{"kind": "conv", "kernel": ' + "5" * 5000 + "}]"},
     "5000 characters"),
    ({"size": "8", "layers": '[{"kind": "conv", "kernel": 1' + "0" * 5000 + ".5}]"},
     "5003 characters"),
])
def test_hostile_json_is_refused_before_parsing(explorer, http_get, params, message):
    status, _, body = http_get(explorer, "/api/stack", params)
    assert status == 400 and message in body["error"]


@pytest.mark.parametrize(("view_name", "params"), [
    ("layer", {"size": "8", "kernel": "5" * 5000}),
    ("gridding", {"rates": "1," + "5" * 5000}),
])
def test_a_5000_digit_number_is_a_400(explorer, http_get, view_name, params):
    status, _, body = http_get(explorer, f"/api/{view_name}", params)
    assert status == 400 and len(body["error"]) < 200


def test_a_programming_error_is_a_500_with_its_traceback_in_the_log(explorer, http_get,
                                                                    monkeypatch, caplog):
    from fcnkit.cli import _LogFormatter

    def broken_view(params):
        return {"x": 1 / 0}

    monkeypatch.setitem(VIEWS, "layer", broken_view)
    with caplog.at_level(logging.ERROR, logger="fcnkit.web.server"):
        status, _, body = http_get(explorer, "/api/layer", {"size": "5"})
    assert status == 500 and "server log" in body["error"]
    # what the command line prints for the record (its formatter prints one message)
    printed = [_LogFormatter().format(r) for r in caplog.records]
    assert any("Traceback" in text and "broken_view" in text and "ZeroDivisionError" in text
               for text in printed), printed


def test_a_slow_view_is_answered_503_in_time(explorer, http_get, monkeypatch):
    monkeypatch.setattr(server_module, "REQUEST_TIME_S", 0.3)
    monkeypatch.setitem(VIEWS, "layer", lambda params: time.sleep(2) or {})
    start = time.monotonic()
    status, _, body = http_get(explorer, "/api/layer", {"size": "5"})
    assert status == 503 and "longer than" in body["error"]
    assert time.monotonic() - start < 1.5
