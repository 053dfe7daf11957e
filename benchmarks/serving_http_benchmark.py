"""``factory serve`` under load: batch-1 requests of the digits model from 1, 8 and 32 clients.

Trains the default digits ``cnn`` briefly (or takes ``--run-dir``), then for batching on (TF Serving's
defaults) and off (``--no-batching``) starts ``factory serve`` on 127.0.0.1 and runs a load generator
in a second process: each client thread keeps one HTTP/1.1 connection and sends one-image
``{"instances": [...]}`` requests back to back for ``--seconds``. Reported per row: requests/s and
the p50/p99 latency the client sees. The limit, measured in this process: the p50 of the same
request as an in-process ``serving_default`` call on the loaded SavedModel.

Targets (this 2-core machine): at 1 client, the server's p50 at most 1.5 ms above the in-process
call; at 32 clients, batching on gives at least 2x the requests/s of batching off.

    python benchmarks/serving_http_benchmark.py [--run-dir RUN] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

CLIENTS = (1, 8, 32)
OVERHEAD_MS = 1.5
BATCHING_GAIN = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the load generator (a second process) ---------------------------------------------------------


def load(url: str, clients: int, seconds: float, body: bytes) -> dict:
    """``clients`` threads sending ``body`` to ``url`` for ``seconds``: requests/s, p50 and p99 in ms."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.connect()
        # http.client sends the headers and the body in two writes; without TCP_NODELAY (which curl,
        # urllib3 and gRPC set) Nagle's algorithm holds the body for the server's delayed ACK (40 ms).
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = {"Content-Type": "application/json"}
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
            latencies[i].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = [x for per in latencies for x in per]
    return {
        "rps": len(every) / elapsed,
        "p50": 1000 * percentile(every, 0.5),
        "p99": 1000 * percentile(every, 0.99),
        "errors": len(errors),
    }


# -- the measurement --------------------------------------------------------------------------------


def start_server(run_dir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    factory = Path(sys.executable).parent / "factory"
    proc = subprocess.Popen(
        [str(factory), "serve", str(run_dir), "--port", "0", "--no-access-log", *flags],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if "serving model" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            match = re.search(r"(http://\S+/v1/models/[^\s:]+)", line)
            return proc, match.group(1) + ":predict"
    raise SystemExit(f"factory serve ended with status {proc.wait()} before it served")


def in_process_p50(run_dir: Path, pixels, calls: int = 2000) -> float:
    import numpy as np
    import tensorflow as tf

    from factory.serving.manifest import find_export

    signature = tf.saved_model.load(str(find_export(run_dir))).signatures["serving_default"]
    x = np.asarray(pixels, dtype=np.uint8)[None]
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        {k: v.numpy() for k, v in signature(image=tf.constant(x)).items()}
        times.append(time.perf_counter() - t0)
    return 1000 * percentile(times[calls // 10 :], 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the load generator's own process
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pixels = [[[int((r * 8 + c) * 4 % 256)] for c in range(8)] for r in range(8)]
    body = json.dumps({"instances": [{"image": pixels}]}).encode()
    if args.load:
        print(json.dumps(load(args.load, args.clients, args.seconds, body)))
        return 0

    run_dir = args.run_dir
    if run_dir is None:
        sys.path.insert(0, str(Path(__file__).parent))
        from serving_benchmark import train_run

        run_dir = Path(tempfile.mkdtemp(prefix="serve-bench-")) / "run"
        train_run(run_dir, args.steps)
    limit = in_process_p50(run_dir, pixels)
    rows = []
    for mode, flags in (("batching on", ()), ("batching off", ("--no-batching",))):
        proc, url = start_server(run_dir, *flags)
        try:
            for clients in CLIENTS:
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--load",
                        url,
                        "--clients",
                        str(clients),
                        "--seconds",
                        str(args.seconds),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows.append((mode, clients, json.loads(done.stdout)))
        finally:
            proc.terminate()
            proc.wait(60)

    print(f"in-process serving_default, batch 1: p50 {limit:.2f} ms\n")
    print(f"{'server':<14}{'clients':>8}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for mode, clients, r in rows:
        print(f"{mode:<14}{clients:>8}{r['rps']:>12.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8}")
    on = {c: r for m, c, r in rows if m == "batching on"}
    off = {c: r for m, c, r in rows if m == "batching off"}
    overhead = on[1]["p50"] - limit
    gain = on[32]["rps"] / off[32]["rps"]
    print(
        f"\nserver overhead at 1 client (p50 - in-process p50): {overhead:.2f} ms "
        f"(target <= {OVERHEAD_MS}: {'ok' if overhead <= OVERHEAD_MS else 'MISSED'})"
    )
    print(
        f"batching at 32 clients: {gain:.2f}x the requests/s of batching off "
        f"(target >= {BATCHING_GAIN}: {'ok' if gain >= BATCHING_GAIN else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
