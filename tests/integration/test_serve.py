"""``factory serve`` in a child process on 127.0.0.1, queried over HTTP like TF Serving's REST API.

One tiny digits run is served twice: by a server with the default batching (status, metadata,
both formats for both signatures against ``tf.saved_model.load``, every bad input, a new version
picked up and the old one unloaded), and by one that waits for fuller batches (eight concurrent
requests merged into one call, a request timing out, SIGTERM answering the request in flight).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from factory.names import WARMUP_REQUESTS
from factory.serving.export_tree import ExportTree
from tests.helpers.predict import BIN, digits_test_records, train_tiny_run

NAME = "digits"


class Server:
    """``factory serve ARGS`` with its stderr read by a thread; ``url`` once it listens."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [str(BIN / "factory"), "serve", *map(str, args), "--port", "0", "--model-name", NAME],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for("serving model")
        self.host, self.port = re.search(r"http://([\d.]+):(\d+)/", line).groups()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("<eof>")
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> str:
        with self.changed:
            ok = self.changed.wait_for(lambda: any(text in x or x == "<eof>" for x in self.lines), timeout)
            found = [x for x in self.lines if text in x]
            assert ok and found, f"no line with {text!r}; the server wrote: {''.join(self.lines[-20:])}"
            return found[0]

    def request(self, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(text)
        return response.status, text

    def metric(self, name: str) -> float:
        """The sum of a Prometheus sample over its labels (0 if absent)."""
        _, text = self.request("GET", "/monitoring/prometheus/metrics")
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith((name + "{", name + " ")))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture(scope="module")
def run(tmp_path_factory, _record_cache):
    return train_tiny_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def server(run):
    served = Server(run, "--poll-seconds", "0.1", "--max-body-bytes", "100000")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def digits():
    _, records, pixels, _ = digits_test_records()
    return records[:5], pixels[:5]


def policy_dir(run: Path) -> Path:
    return run / "export" / "best"


def newest(run: Path) -> int:
    return ExportTree(run).versions("best")[-1]


def test_the_export_holds_tf_servings_warmup_file_and_the_server_replays_it(run, server):
    from tensorflow_serving.apis import prediction_log_pb2

    version = policy_dir(run) / str(newest(run))
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(version / WARMUP_REQUESTS))
    ]
    requests = [(x.predict_log.request.model_spec.signature_name, dict(x.predict_log.request.inputs)) for x in logs]
    assert [s for s, _ in requests] == ["serving_default", "tf_example"] * 2
    assert [tf.make_ndarray(i["image"]).shape for s, i in requests if s == "serving_default"] == [
        (1, 8, 8, 1),
        (32, 8, 8, 1),
    ]
    assert all(x.predict_log.request.model_spec.name == "model" for x in logs)  # export.model_name
    assert "4 warmup requests replayed" in server.wait_for(f"model '{NAME}' version {newest(run)} AVAILABLE")


def test_status_and_metadata_as_tf_serving_answers_them(run, server):
    status, body = server.request("GET", f"/v1/models/{NAME}")
    assert status == 200
    assert body == {
        "model_version_status": [
            {"version": str(newest(run)), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    status, body = server.request("GET", f"/v1/models/{NAME}/metadata")
    assert status == 200 and body["model_spec"] == {"name": NAME, "signature_name": "", "version": str(newest(run))}
    defs = body["metadata"]["signature_def"]["signature_def"]
    image = defs["serving_default"]["inputs"]["image"]
    assert image["dtype"] == "DT_UINT8" and [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert defs["tf_example"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert set(defs["serving_default"]["outputs"]) == {"class_ids", "logits", "probabilities"}
    assert re.search(r'"GET /v1/models/digits/metadata" 200 [\d.]+ ms', server.wait_for("/metadata"))  # access log


def test_both_formats_of_both_signatures_give_what_the_saved_model_gives(run, server, digits):
    records, pixels = digits
    loaded = tf.saved_model.load(str(policy_dir(run) / str(newest(run))))
    want = {k: v.numpy() for k, v in loaded.signatures["serving_default"](image=tf.constant(pixels)).items()}
    b64 = [{"b64": base64.b64encode(r).decode()} for r in records]
    requests = {
        "row": {"instances": [{"image": p.tolist()} for p in pixels]},
        "row, one input as plain values": {"instances": [p.tolist() for p in pixels]},
        "columnar": {"inputs": {"image": pixels.tolist()}},
        "row tf_example": {"signature_name": "tf_example", "instances": b64},
        "columnar tf_example": {"signature_name": "tf_example", "inputs": {"examples": b64}},
    }
    for what, body in requests.items():
        status, answer = server.request("POST", f"/v1/models/{NAME}:predict", body)
        assert status == 200, (what, answer)
        if "predictions" in answer:
            got = {k: np.array([row[k] for row in answer["predictions"]]) for k in want}
        else:
            got = {k: np.array(answer["outputs"][k]) for k in want}
        assert got["class_ids"].dtype.kind == "i", what
        np.testing.assert_array_equal(got["class_ids"], want["class_ids"], err_msg=what)
        for k in ("probabilities", "logits"):  # six significant digits at least, as TF Serving writes floats
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=what)


BAD = [
    ("malformed JSON", b'{"instances": [', 400, "JSON Parse error"),
    ("empty body", b"", 400, "The document is empty"),
    ("both keys", {"instances": [[1]], "inputs": [[1]]}, 400, "expecting only one of 'inputs' or 'instances'"),
    ("neither key", {"rows": []}, 400, "Missing 'inputs' or 'instances' key"),
    ("unknown input", {"instances": [{"picture": [[[0]]]}]}, 400, "does not have named input: picture"),
    ("missing input", {"inputs": {"picture": 1}}, 400, "Missing named input: image"),
    ("wrong dtype", {"instances": [{"image": [[["a"]] * 8] * 8}]}, 400, "is not of expected type: uint8"),
    ("ragged", {"instances": [[[[0]] * 8] * 7 + [[[0]] * 3]]}, 400, "Encountered list at unexpected size"),
    ("wrong shape", {"instances": [[[0] * 8] * 8]}, 400, "input 'image'"),
    ("bad base64", {"signature_name": "tf_example", "instances": [{"b64": "%%%"}]}, 400, "Unable to base64 decode"),
    ("not an Example", {"signature_name": "tf_example", "instances": [{"b64": "AAAA"}]}, 400, ""),
    ("unknown signature", {"signature_name": "classify", "instances": [[0]]}, 400, 'name: "classify" not found'),
    ("body over the limit", b'{"instances": [' + b"0, " * 60000 + b"0]}", 413, "--max-body-bytes"),
]


@pytest.mark.parametrize("what, body, code, text", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_tf_servings_error_and_the_next_request_succeeds(server, digits, what, body, code, text):
    raw = body if isinstance(body, bytes) else None
    status, answer = server.request("POST", f"/v1/models/{NAME}:predict", None if raw else body, raw=raw)
    assert status == code and set(answer) == {"error"} and text in answer["error"], answer
    assert "Traceback" not in answer["error"] and "tensorflow/core" not in answer["error"]
    status, answer = server.request("POST", f"/v1/models/{NAME}:predict", {"instances": digits[1][:1].tolist()})
    assert status == 200 and len(answer["predictions"]) == 1


@pytest.mark.parametrize(
    "method, path, code, text",
    [
        ("GET", "/v1/models/nope", 404, "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
        ("POST", f"/v1/models/{NAME}/versions/999:predict", 404, f"Specific({NAME}, 999)"),
        ("GET", f"/v1/models/{NAME}/versions/999", 404, f"Could not find version 999 of model {NAME}"),
        ("POST", f"/v1/models/{NAME}/labels/stable:predict", 400, "Unrecognized servable version label: stable"),
        ("GET", "/v1/models", 400, "Missing model name"),
        ("GET", "/v1/foo", 400, "Malformed request"),
    ],
)
def test_unknown_models_versions_and_paths(server, method, path, code, text):
    status, answer = server.request(method, path, {"instances": [[0]]} if method == "POST" else None)
    assert status == code and text in answer["error"], answer


def test_a_new_version_is_served_when_complete_and_the_old_one_unloaded(run, server, digits):
    old = newest(run)
    tree = ExportTree(run)
    staging = tree.staging("best", old + 1)  # as an export is written: aside, then renamed into place
    shutil.copytree(policy_dir(run) / str(old), staging)
    tree.publish(staging, "best", old + 1)
    server.wait_for(f"model '{NAME}' version {old + 1} AVAILABLE")
    states = {s["version"]: s["state"] for s in server.request("GET", f"/v1/models/{NAME}")[1]["model_version_status"]}
    assert states == {str(old + 1): "AVAILABLE", str(old): "AVAILABLE"}  # `current` still points at the old one
    body = {"instances": digits[1][:2].tolist()}
    assert server.request("POST", f"/v1/models/{NAME}/labels/current:predict", body)[0] == 200
    tree.point("best", old + 1)
    server.wait_for(f"model '{NAME}' version {old} unloading")
    deadline = time.monotonic() + 30
    while server.request("GET", f"/v1/models/{NAME}/versions/{old}")[1]["model_version_status"][0]["state"] != "END":
        assert time.monotonic() < deadline, "the old version was not unloaded"
    assert server.request("POST", f"/v1/models/{NAME}/versions/{old}:predict", body)[0] == 404
    assert server.request("POST", f"/v1/models/{NAME}/versions/{old + 1}:predict", body)[0] == 200
    assert server.metric("factory_serve_requests_total") > 10


def test_a_version_that_fails_to_load_is_reported_and_the_one_before_keeps_serving(run, server, digits):
    good = newest(run)
    tree = ExportTree(run)
    staging = tree.staging("best", good + 1)
    shutil.copytree(policy_dir(run) / str(good), staging)
    (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
    tree.publish(staging, "best", good + 1)
    assert "failed to load" in server.wait_for(f"model '{NAME}' version {good + 1} failed to load")
    status = server.request("GET", f"/v1/models/{NAME}/versions/{good + 1}")[1]["model_version_status"][0]
    assert (
        status["state"] == "END" and status["status"]["error_code"] == "UNKNOWN" and status["status"]["error_message"]
    )
    status, answer = server.request("POST", f"/v1/models/{NAME}:predict", {"instances": digits[1][:1].tolist()})
    assert status == 200 and len(answer["predictions"]) == 1
    assert server.request("GET", f"/v1/models/{NAME}/metadata")[1]["model_spec"]["version"] == str(good)


def test_batching_merges_concurrent_requests_times_out_and_drains_on_sigterm(run, digits):
    server = Server(
        policy_dir(run), "--max-batch-size", "8", "--batch-timeout-micros", "5000000", "--request-timeout", "2"
    )
    try:
        body = {"instances": digits[1][:1].tolist()}
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.request("POST", f"/v1/models/{NAME}:predict", body), range(8)))
        assert [a[0] for a in answers] == [200] * 8
        assert server.metric("factory_serve_batch_requests_count") == 1  # one call ...
        assert server.metric("factory_serve_batch_requests_sum") == 8  # ... for the eight requests

        status, answer = server.request("POST", f"/v1/models/{NAME}:predict", body)  # alone: waits 5 s for others
        assert status == 504 and "--request-timeout" in answer["error"]

        pending = ThreadPoolExecutor(1).submit(server.request, "POST", f"/v1/models/{NAME}:predict", body)
        deadline = time.monotonic() + 30
        while server.metric("factory_serve_queued_rows") < 1:
            assert time.monotonic() < deadline and not pending.done(), "the request never queued"
        server.proc.send_signal(signal.SIGTERM)
        status, answer = pending.result(timeout=60)
        assert status == 200 and len(answer["predictions"]) == 1  # answered, not dropped
        assert server.proc.wait(60) == 0
    finally:
        server.stop()


def test_bad_options_are_refused_before_tensorflow_loads(run, tmp_path):
    for args, text in [
        ([str(tmp_path / "nowhere")], "does not exist"),
        ([str(run), "--max-batch-size", "0"], "--max-batch-size"),
        ([str(run), "--port", "70000"], "--port"),
        ([str(run), "--model-name", "a b"], "--model-name"),
    ]:
        probe = "import sys; from factory.cli import main; code = main(['serve', *sys.argv[1:]]); "
        probe += "print(code, 'tensorflow' in sys.modules)"
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == ["2", "False"], (args, done.stdout, done.stderr)
        assert text in done.stderr and "Traceback" not in done.stderr
