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


def write_fake_run(run_dir, data_dir, model_state, *, seed=0, epochs=3):
    """A run directory laid out as ``fcnkit train`` writes it, without training: an
    untrained FCN-8s checkpoint, a known confusion matrix and made-up curves."""
    from fcnkit.runtime.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    classes = json.loads((data_dir / "synthetic.json").read_text())["classes"]
    num_classes = len(classes)
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for i in range(num_classes):
        confusion[i][i] = 50 + 10 * i
        confusion[i][(i + 1) % num_classes] = 5 * (i + 1)
    config = {"data": f"synth:{data_dir}", "val_split": "val", "model": "fcn8s",
              "backbone": "resnet18", "epochs": epochs, "lr": 0.01 * (seed + 1)}
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = []
    for epoch in range(1, epochs + 1):
        for step in (2 * epoch - 1, 2 * epoch):
            lines.append({"kind": "step", "epoch": epoch, "step": step,
                          "loss": 2.0 / step + 0.1 * seed, "lr": 0.01 * (1 - step / 7),
                          "img_per_s": 10.0 + step})
        lines.append({"kind": "epoch", "epoch": epoch, "step": 2 * epoch,
                      "train_loss": 2.0 / epoch, "lr": 0.01, "time_s": 1.5,
                      "miou": 0.1 * epoch + 0.05 * seed, "pixel_acc": 0.3 + 0.1 * epoch})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    save_checkpoint(run_dir / "best.pt", {
        "format": CHECKPOINT_FORMAT, "model_state": model_state,
        "model_config": {"name": "fcn8s", "num_classes": num_classes, "backbone": "resnet18"},
        "classes": classes, "config": config, "epoch": epochs, "step": 2 * epochs,
        "metrics": {"classes": classes, "confusion": confusion}, "best_miou": 0.3,
        "world_size": 1,
    })
    return run_dir


@pytest.fixture(scope="session")
def fake_runs(tmp_path_factory, synthetic_data):
    """Two fake run directories over one tiny synthetic dataset (tests/conftest.py's)."""
    import torch

    from fcnkit.models import build_model

    root = tmp_path_factory.mktemp("report")
    data = synthetic_data(train=2, val=3, seed=1, size=(40, 56))
    torch.manual_seed(0)
    state = build_model("fcn8s", num_classes=9, backbone="resnet18").state_dict()
    return [write_fake_run(root / "run-a", data, state, seed=0),
            write_fake_run(root / "run-b", data, state, seed=1)]
