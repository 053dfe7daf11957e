"""Statistics benchmark: the ``auto`` statistics pass against a hand-written parse pass.

Writes ``--records`` records once (cached in ``--dir``, by default in the temporary directory)
with the spec's writer, in 8 shards: 32 float32 scalars ``f0..f31`` with ``missing: mean`` and
``preprocess: {normalize: auto}``, 5% of their values missing (absent from the records), and a
string ``s`` with ``vocabulary: auto`` and ``oov_buckets: 1``, Zipf-like over 50,000 values
(each appears). Then it times, on the same files and in the same run:

- the baseline: ``TFRecordDataset(files).batch(1024).map(parse_example, AUTOTUNE)`` with the
  spec's parse spec, consumed by ``Dataset.reduce``;
- ``compute_statistics(spec, files)`` (``factory.features.scan``: fills, normalization,
  vocabulary and every feature's summary, the pass training runs) and ``summarize(spec, files)``
  (``factory.features.profile``, ``factory stats``);
- with ``--prototype``, ``prototype_statistics``: the design proposed for ``scan``.

Timings include building the pipeline, after TensorFlow's import and a warm-up; paths interleave
over ``--repeats`` rounds, the best run counts. The table gives wall and CPU seconds (the CPU
ratio is the steadier on a shared machine) and peak RSS growth. Results are checked against
numpy: means, stds and fills to 1e-9 relative; vocabulary, min, max and (missing) counts exactly.
This benchmark gates: exit status 1 when ``compute_statistics`` or ``summarize`` exceeds ``--max-ratio``.

    python benchmarks/statistics_benchmark.py [--records 1000000] [--repeats 3] [--prototype]
    python benchmarks/statistics_benchmark.py --records 100000    # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before TensorFlow is imported: its C++ logging and the oneDNN notice would drown the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

from factory import FeatureSpec

FLOATS = [f"f{i}" for i in range(32)]
DISTINCT = 50_000
SHARDS = 8
MISSING = 0.05
BATCH = 1024
PROTOTYPE_BATCH = 8192
SAMPLE = 20_000  # values per feature in the prototype's bounded sample (as ``accumulators.Sample``)
ABSENT = b"\x00factory:missing\x00"  # what the prototype reads for an absent string
SEED = 20240611
DATA_FORMAT = 2  # bump when the generated data changes, so that a cached set is rewritten


def spec_dict() -> dict[str, Any]:
    number = {"dtype": "float32", "shape": [], "missing": "mean", "preprocess": {"normalize": "auto"}}
    features: dict[str, Any] = {name: json.loads(json.dumps(number)) for name in FLOATS}
    return {"features": {**features, "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "oov_buckets": 1}}}


def make_data(records: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded floats ``[records, 32]`` (feature i: mean 10 i, std 1 + i / 8; NaN where missing) and strings."""
    rng = np.random.default_rng(SEED)
    i = np.arange(len(FLOATS))
    x = (rng.standard_normal((records, len(FLOATS)), dtype=np.float32) * (1 + i / 8) + 10 * i).astype(np.float32)
    x[rng.random(x.shape) < MISSING] = np.nan
    words = np.array([f"w{r}{'abcdefghij'[r % 10] * (r % 7)}" for r in range(DISTINCT)], dtype=object)
    p = 1.0 / np.arange(1, DISTINCT + 1) ** 1.05
    pick = rng.choice(DISTINCT, size=records, p=p / p.sum())
    pick[: min(records, DISTINCT)] = np.arange(min(records, DISTINCT))  # every value appears
    rng.shuffle(pick)
    return x, words[pick]


def write_records(directory: Path, records: int) -> list[str]:
    """The shards under ``directory``, written (NaN: left out of the record) unless the same data is there."""
    manifest = directory / "manifest.json"
    files = [str(directory / f"data-{k:05d}-of-{SHARDS:05d}.tfrecord") for k in range(SHARDS)]
    wanted = {"records": records, "seed": SEED, "format": DATA_FORMAT}
    if manifest.exists() and json.loads(manifest.read_text()) == wanted and all(map(os.path.exists, files)):
        return files
    print(f"writing {records:,} records into {directory} (once) ...", flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    x, s = make_data(records)
    with FeatureSpec.from_dict(spec_dict()).writer(directory / "data", shards=SHARDS, overwrite=True) as writer:
        for a in range(0, records, 50_000):  # in parts: rows with a missing value are encoded one by one
            writer.write_many({**{n: x[a : a + 50_000, i] for i, n in enumerate(FLOATS)}, "s": s[a : a + 50_000]})
    manifest.write_text(json.dumps(wanted))
    return files


# -- what the results must be -----------------------------------------------------------------


def reference(records: int) -> dict[str, Any]:
    """The present values' statistics in numpy float64, a contiguous column at a time (numpy sums it pairwise),
    and the strings ranked by count; ``missing`` statistics and summaries ignore missing values."""
    x, s = make_data(records)
    ref: dict[str, Any] = {"records": records}
    for i, name in enumerate(FLOATS):
        column = x[:, i].astype(np.float64)
        present = column[~np.isnan(column)]
        ref[name] = (records - len(present), present.mean(), present.std(), present.min(), present.max())
    values, counts = np.unique(s.astype(str), return_counts=True)
    ref["s"] = sorted(
        ([v, n] for v, n in zip(values.tolist(), counts.tolist(), strict=True)), key=lambda p: (-p[1], p[0])
    )
    return ref


def _require(ok: Any, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def _close(got: float, want: float, what: str) -> None:
    _require(abs(got - want) <= 1e-9 * max(abs(want), 1e-12), f"{what}: {got!r}, expected {want!r}")


def check(entries: dict[str, Any], summaries: dict[str, Any], ref: dict[str, Any]) -> None:
    """The ``auto`` entries and the summaries against the reference; raises when they differ."""
    for name in FLOATS:
        (missing, mean, std, low, high), entry, summary = ref[name], entries[name], summaries[name]
        _close(entry["fill"][0], mean, f"{name} fill")
        _close(entry["normalize"]["mean"][0], mean, f"{name} mean")
        _close(entry["normalize"]["std"][0], std, f"{name} std")
        _require(summary["missing"] == missing and summary["values"] == ref["records"] - missing, f"{name} counts")
        _close(summary["mean"], mean, f"{name} summary mean")
        _close(summary["std"], std, f"{name} summary std")
        _require((summary["min"], summary["max"]) == (low, high), f"{name} min/max {summary['min']}/{summary['max']}")
        edges, fractions = summary["histogram"]["edges"], summary["histogram"]["fractions"]
        _require(low <= edges[0] and edges == sorted(edges) and edges[-1] <= high, f"{name} histogram edges")
        _require(abs(sum(fractions) - 1) < 1e-9, f"{name} histogram fractions")
    vocab, top = entries["s"], summaries["s"]
    _require(vocab["vocabulary"] == [v for v, _ in ref["s"]], "s: the vocabulary differs from the data")
    _require(vocab["values"] == ref["records"] and vocab["distinct"] == DISTINCT, "s: counts differ")
    _require(top["top"] and top["top"] == ref["s"][: len(top["top"])] and not top["missing"], "s: top values differ")


# -- the paths ----------------------------------------------------------------------------------


def baseline(spec: FeatureSpec, files: list[str]) -> int:
    """One pass of the hand-written pipeline, consumed inside the TensorFlow runtime; returns the record count."""
    import tensorflow as tf

    parse_spec = spec.parse_spec()
    ds = tf.data.TFRecordDataset(files).batch(BATCH)
    ds = ds.map(lambda serialized: tf.io.parse_example(serialized, parse_spec), num_parallel_calls=tf.data.AUTOTUNE)
    return int(ds.reduce(np.int64(0), lambda n, batch: n + tf.shape(batch["s"], out_type=tf.int64)[0]))


def prototype_statistics(spec: FeatureSpec, files: list[str], batch_size: int = PROTOTYPE_BATCH) -> dict[str, Any]:
    """The proposed ``scan``, for scalar float32 and string features: ``{"records", "features", "summary"}``
    shaped like ``compute_statistics``' result (the keys ``check`` reads).

    One pipeline over all files, traced once. A batch is parsed dense (a missing float reads as NaN,
    as training reads it) and reduced inside the pipeline, in parallel, to float64 count, mean, M2,
    min and max per feature, unique strings with their counts, and the candidates of a bottom-k
    sample of records (a random key per record, below the current limits). A sequential map adds
    the string counts to hash tables (bytes, decoded once at the end); Python merges the partials
    (Chan's formulas) and shrinks the samples.
    """
    import tensorflow as tf

    from factory.features.scan import TOP_VALUES, histogram

    numeric = [f for f in spec.all() if f.dtype == "float32" and f.shape == ()]
    strings = [f for f in spec.all() if f.dtype == "string" and f.shape == ()]
    _require(len(numeric) + len(strings) == len(spec.all()), "the prototype reads scalar float32 and string features")
    view = {f.name: tf.io.FixedLenFeature([], tf.float32, np.nan) for f in numeric}
    view |= {f.name: tf.io.FixedLenFeature([], tf.string, ABSENT) for f in strings}
    # A key at or above a feature's limit can no longer enter its sample. The pipeline reads the limits
    # as they fall; a batch that read an older one sends more candidates, which the loop drops.
    width, records, limit = len(numeric), 0, np.ones(len(numeric))
    threshold = tf.Variable(1.0, dtype=tf.float64)  # the largest limit
    tables = {f.name: tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, 0) for f in strings}

    @tf.autograph.experimental.do_not_convert
    def count(batch):  # in order, one batch at a time: the tables are not safe for concurrent updates
        for f in strings:
            unique, repeats = batch.pop(f.name)
            tables[f.name].insert(unique, tables[f.name].lookup(unique) + repeats)
        return batch

    @tf.autograph.experimental.do_not_convert  # plain Python over the features; conversion only costs tracing time
    def partials(index, serialized):
        parsed = tf.io.parse_example(serialized, view)
        x32 = tf.stack([parsed[f.name] for f in numeric], 1)  # [batch, features]
        present = ~tf.math.is_nan(x32)
        x = tf.where(present, tf.cast(x32, tf.float64), 0.0)
        n = tf.reduce_sum(tf.cast(present, tf.float64), 0)
        mean = tf.math.divide_no_nan(tf.reduce_sum(x, 0), n)
        m2 = tf.reduce_sum(tf.square(tf.where(present, x - mean, 0.0)), 0)
        low, high = tf.reduce_min(tf.where(present, x, np.inf), 0), tf.reduce_max(tf.where(present, x, -np.inf), 0)
        keys = tf.random.stateless_uniform(tf.shape(serialized), tf.stack([index, 0]), dtype=tf.float64)
        rows = tf.where(keys < threshold)[:, 0]
        out = {"moments": tf.stack([n, mean, m2, low, high]), "records": tf.size(serialized)}
        out["candidates"] = (tf.gather(keys, rows), tf.gather(x32, rows))
        for f in strings:
            unique, _, counts = tf.unique_with_counts(parsed[f.name], out_idx=tf.int64)
            out[f.name] = (unique, counts)
        return out

    ds = tf.data.TFRecordDataset(files).batch(batch_size).enumerate().map(partials, tf.data.AUTOTUNE).map(count)
    n, mean, m2, low, high = np.zeros(width), np.zeros(width), np.zeros(width), np.inf, -np.inf
    sample: list[list[np.ndarray]] = [[np.empty((2, 0))] for _ in numeric]  # [keys, values] parts per feature
    for batch in ds.prefetch(2):
        records += int(batch["records"])
        moments = batch["moments"].numpy()
        n, mean, m2 = chan(n, mean, m2, *moments[:3])
        low, high = np.minimum(low, moments[3]), np.maximum(high, moments[4])
        keys, values = (t.numpy() for t in batch["candidates"])
        for c in np.flatnonzero(keys.min(initial=1.0) < limit):
            take = (keys < limit[c]) & ~np.isnan(values[:, c])
            sample[c].append(np.stack([keys[take], values[take, c]]))
            if sum(part.shape[1] for part in sample[c]) >= 2 * SAMPLE:
                both = np.concatenate(sample[c], 1)
                sample[c] = [both[:, np.argpartition(both[0], SAMPLE - 1)[:SAMPLE]]]
                limit[c] = sample[c][0][0].max()
                threshold.assign(limit.max())

    entries, summaries = {}, {}
    for c, f in enumerate(numeric):
        _require(n[c] == records or f.missing is not None, f"{f.name}: a record lacks this required feature")
        keys, values = np.concatenate(sample[c], 1)
        values = values[np.argsort(keys)[:SAMPLE]]
        std = float(np.sqrt(m2[c] / n[c]))
        fill = {"mean": mean[c], "median": np.median(values)}[f.missing.fill] if f.missing and f.missing.auto else 0
        entries[f.name] = {"fill": [float(fill)], "normalize": {"mean": [float(mean[c])], "std": [std]}}
        summaries[f.name] = {"missing": records - int(n[c]), "values": int(n[c]), "min": float(low[c])}
        summaries[f.name] |= {"max": float(high[c]), "mean": float(mean[c]), "std": std, "histogram": histogram(values)}
    for f in strings:
        counts = dict(zip(*(t.numpy().tolist() for t in tables[f.name].export()), strict=True))
        missing = counts.pop(ABSENT, 0)
        _require(not missing or f.missing is not None, f"{f.name}: a record lacks this required feature")
        text = ((value.decode("utf-8"), k) for value, k in counts.items())
        ranked = sorted(text, key=lambda p: (-p[1], p[0]))
        entries[f.name] = {"vocabulary": [v for v, _ in ranked], "values": records - missing, "distinct": len(ranked)}
        summaries[f.name] = {"missing": missing, "top": [[v, k] for v, k in ranked[:TOP_VALUES]]}
    return {"records": records, "features": entries, "summary": summaries}


def chan(n, mean, m2, n_b, mean_b, m2_b):
    """Count, mean and sum of squared deviations of two parts merged (Chan, Golub and LeVeque)."""
    total = n + n_b
    w = np.divide(n_b, total, out=np.zeros_like(total), where=total > 0)
    delta = mean_b - mean
    return total, mean + delta * w, m2 + m2_b + delta * delta * n * w


# -- measuring ----------------------------------------------------------------------------------


def measure(run: Callable[[], Any]) -> tuple[Any, float, float, int]:
    """``run()``'s result, wall and CPU seconds, and its peak RSS growth (sampled every 5 ms)."""

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    first, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu, start = time.process_time(), time.perf_counter()
    result = run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    done.set()
    sampler.join()
    return result, wall, cpu, max(peak[0], rss()) - first


def best_of(repeats: int, paths: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]) -> dict[str, list]:
    """Best wall and CPU seconds of each ``(run, check)`` path and its largest peak RSS growth, rounds
    rotating the order; each path's first result is checked (outside the timing)."""
    names = list(paths)
    best = {name: [np.inf, np.inf, 0] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run, check_result = paths[name]
            result, wall, cpu, growth = measure(run)
            if r == 0:
                check_result(result)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu), max(best[name][2], growth)]
            print(f"  round {r + 1}: {name:<19} {wall:6.2f} s wall {cpu:6.2f} s CPU {growth >> 20:5d} MB", flush=True)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to write and scan (default 1000000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the best counts (default 3)")
    parser.add_argument("--dir", type=Path, help="where the records are cached (default: a folder in the temp dir)")
    parser.add_argument("--max-ratio", type=float, default=1.5, help="fail above this wall-time ratio (default 1.5)")
    parser.add_argument("--prototype", action="store_true", help="also time the design proposed for scan")
    args = parser.parse_args(argv)
    if args.records < DISTINCT or args.repeats < 1:
        parser.error(f"--records must be at least {DISTINCT} and --repeats at least 1")

    import tensorflow as tf

    from factory.features.profile import summarize
    from factory.features.scan import compute_statistics

    directory = args.dir or Path(tempfile.gettempdir(), f"factory-statistics-bench-{args.records}")
    spec = FeatureSpec.from_dict(spec_dict())
    files = write_records(directory, args.records)
    ref = reference(args.records)
    baseline(spec, files[:1])  # warm-up: TensorFlow's first pipeline and ops, not timed
    print(f"{args.records:,} records, {SHARDS} shards, best of {args.repeats}; TensorFlow {tf.__version__}")

    def entries_and_summaries(out: dict[str, Any]) -> None:
        check(out["features"], out["summary"], ref)

    def summarized(out: dict[str, Any]) -> None:
        check({name: out["features"][name]["statistics"] for name in [*FLOATS, "s"]}, out["features"], ref)

    paths = {
        "hand-written parse": (lambda: baseline(spec, files), lambda n: _require(n == args.records, f"{n} records")),
        "compute_statistics": (lambda: compute_statistics(spec, files), entries_and_summaries),
        "summarize": (lambda: summarize(spec, files), summarized),
    }
    if args.prototype:
        paths["prototype"] = (lambda: prototype_statistics(spec, files), entries_and_summaries)
    best = best_of(args.repeats, paths)

    base_wall, base_cpu, _ = best["hand-written parse"]
    print(f"\n{'path':<20} {'wall s':>7} {'CPU s':>7} {'peak RSS':>9}  {'wall ratio':>10} {'CPU ratio':>9}  result")
    failed = False
    for name, (wall, cpu, growth) in best.items():
        ratio = wall / base_wall
        gated = name in ("compute_statistics", "summarize")
        failed |= gated and ratio > args.max_ratio
        verdict = ("PASS" if ratio <= args.max_ratio else "FAIL") + f" (<= {args.max_ratio:g}x)" if gated else ""
        ratios = f"{ratio:>9.2f}x {cpu / base_cpu:>8.2f}x" if name != "hand-written parse" else f"{'':>20}"
        print(f"{name:<20} {wall:>7.2f} {cpu:>7.2f} {growth >> 20:>6d} MB  {ratios}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
