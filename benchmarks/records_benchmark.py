"""Records benchmark: the spec's writer and eval pipeline against hand-written TensorFlow.

Writes and reads ``--records`` records of two tables and prints, from one run,
each path's rate and its ratio against a hand-written baseline:

- the numeric table (a 32-float feature ``x`` and an int64 label ``y``):
  write: ``spec.writer(...).write_many(columns)`` against a loop that builds a
  ``tf.train.Example`` per record and writes it with ``tf.io.TFRecordWriter``
  (target: at least 5x); read: ``spec.dataset(mode="eval")`` against a
  hand-tuned ``tf.data`` pipeline (batch, then ``parse_example`` with AUTOTUNE,
  then prefetch; target at least 0.95x) and against the naive
  ``parse_single_example``-then-batch pipeline (target: at least 5x);
- the mixed table (eight float32 scalars ``f0``..``f7``, a string ``city`` of
  a few thousand distinct values, an int64 label ``y``): write only, the same
  two writers (target: at least 10x).

Every path runs ``--repeats`` times, interleaved so that machine noise hits all
of them alike, and the best run of each counts. Both writers write the same
number of shards, and their files are checked to hold the same values as the
input (outside the timing). The exit status is 0 whether or not a target is
met: this is a measurement, not a test.

Run with ``make bench`` or ``python benchmarks/records_benchmark.py [--records N] [--repeats K]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before TensorFlow is imported: its C++ logging and the oneDNN notice would drown the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

from factory import FeatureSpec

SPEC = {
    "features": {"x": {"dtype": "float32", "shape": [32]}},
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 10}},
}
FLOATS = [f"f{i}" for i in range(8)]
MIXED_SPEC = {
    "features": {
        **{name: {"dtype": "float32", "shape": []} for name in FLOATS},
        "city": {"dtype": "string", "shape": []},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 10}},
}
CITIES = 3000
SHARDS = 4
BATCH = 256
SEED = 20240601


def make_data(records: int) -> dict[str, np.ndarray]:
    """Seeded features ``x`` ``[records, 32]`` float32 and labels ``y`` ``[records]`` int64 in 0..9."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((records, 32), dtype=np.float32)
    y = rng.integers(0, 10, size=records, dtype=np.int64)
    return {"x": x, "y": y}


def make_mixed(records: int) -> dict[str, np.ndarray]:
    """Seeded columns of the mixed table: ``f0``..``f7`` float32 ``[records]``, ``city`` an object array of
    ``str`` (``city_0``..``city_2999``, Zipf-like: a few cities are most of the rows), ``y`` int64 in 0..9."""
    rng = np.random.default_rng(SEED + 1)
    columns = {name: rng.standard_normal(records, dtype=np.float32) for name in FLOATS}
    names = np.array([f"city_{i}" for i in range(CITIES)], dtype=object)
    columns["city"] = names[(rng.zipf(1.3, size=records) - 1) % CITIES]
    columns["y"] = rng.integers(0, 10, size=records, dtype=np.int64)
    return columns


# -- writers --------------------------------------------------------------------------------


def write_spec(spec: FeatureSpec, prefix: Path, columns: dict[str, np.ndarray]) -> list[str]:
    """The path under test: the spec's validating writer, fed whole columns."""
    with spec.writer(prefix, shards=SHARDS, overwrite=True) as writer:
        writer.write_many(columns)
    return [str(p) for p in writer.paths]


def _write_examples(prefix: Path, examples) -> list[str]:
    """Serialize each ``tf.train.Example`` of ``examples`` and write it with ``tf.io.TFRecordWriter``, round-robin."""
    import tensorflow as tf

    paths = [f"{prefix}-{i:05d}-of-{SHARDS:05d}.tfrecord" for i in range(SHARDS)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i, example in enumerate(examples):
        writers[i % SHARDS].write(example.SerializeToString())
    for w in writers:
        w.close()
    return paths


def write_baseline(prefix: Path, columns: dict[str, np.ndarray]) -> list[str]:
    """The hand-written loop: one ``tf.train.Example`` per record, round-robin over the shards.

    Rows go in as Python lists (``tolist()``): protobuf copies those about 1.7x
    faster than numpy rows, so this is the quicker of the two common ways to
    write the loop.
    """
    import tensorflow as tf

    def examples():
        for xi, yi in zip(columns["x"], columns["y"], strict=True):
            yield tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "x": tf.train.Feature(float_list=tf.train.FloatList(value=xi.tolist())),
                        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(yi)])),
                    }
                )
            )

    return _write_examples(prefix, examples())


def write_mixed_baseline(prefix: Path, columns: dict[str, np.ndarray]) -> list[str]:
    """The hand-written loop for the mixed table: one ``tf.train.Example`` per record, built from Python
    values (each column's ``tolist()`` taken once, inside the timing), strings encoded as UTF-8."""
    import tensorflow as tf

    rows = zip(*(columns[name].tolist() for name in [*FLOATS, "city", "y"]), strict=True)

    def examples():
        for *floats, city, y in rows:
            feature = {
                name: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
                for name, v in zip(FLOATS, floats, strict=True)
            }
            feature["city"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[city.encode()]))
            feature["y"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[y]))
            yield tf.train.Example(features=tf.train.Features(feature=feature))

    return _write_examples(prefix, examples())


# -- readers --------------------------------------------------------------------------------


def read_spec(spec: FeatureSpec, files: list[str]):
    """The path under test: the spec's evaluation pipeline."""
    return spec.dataset(files, mode="eval", batch_size=BATCH)


def _records(files: list[str]):
    import tensorflow as tf

    # One reader over the shards in file order: on a few cores this beats a parallel
    # interleave, which hands every record between threads.
    return tf.data.TFRecordDataset(files)


def _hand_parse_spec():
    import tensorflow as tf

    return {"x": tf.io.FixedLenFeature([32], tf.float32), "y": tf.io.FixedLenFeature([], tf.int64)}


def read_tuned(files: list[str]):
    """Hand-tuned: batch, then one vectorised ``parse_example`` per batch with AUTOTUNE, then prefetch."""
    import tensorflow as tf

    parse_spec = _hand_parse_spec()

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        return {"x": parsed["x"]}, parsed["y"]

    return _records(files).batch(BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_naive(files: list[str]):
    """Naive: ``parse_single_example`` record by record, then batch."""
    import tensorflow as tf

    parse_spec = _hand_parse_spec()

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, parse_spec)
        return {"x": parsed["x"]}, parsed["y"]

    return _records(files).map(parse).batch(BATCH)


def consume(ds) -> int:
    """Pull every ``(features, labels)`` batch through the pipeline; return the number of examples.

    The batches are consumed inside the TensorFlow runtime (``Dataset.reduce``),
    as a compiled training or evaluation step consumes them, so the rate is the
    pipeline's and not that of a Python loop around it.
    """
    import tensorflow as tf

    count = ds.reduce(np.int64(0), lambda n, batch: n + tf.shape(batch[1], out_type=tf.int64)[0])
    return int(count)


# -- correctness guard ----------------------------------------------------------------------


def _mixed_parse_spec():
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in FLOATS}
    return spec | {"city": tf.io.FixedLenFeature([], tf.string), "y": tf.io.FixedLenFeature([], tf.int64)}


def _as_stored(values: np.ndarray) -> np.ndarray:
    """Input values as ``parse_example`` returns them: strings as UTF-8 bytes."""
    return np.array([v.encode() for v in values], dtype=object) if values.dtype == object else values


def check_same_values(ours: list[str], theirs: list[str], columns: dict[str, np.ndarray], parse_spec) -> str:
    """Both writers' shards parse to the same values, equal to the input; raises otherwise.

    Returns a note on whether the files are also byte-identical: they are when
    protobuf happens to serialize the feature map in declaration order, which
    depends on its per-process hash seed.
    """
    import tensorflow as tf

    for shard, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        got = []
        for path in (a, b):
            records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
            parsed = tf.io.parse_example(records, parse_spec)
            got.append({name: value.numpy() for name, value in parsed.items()})
            # The protobuf library itself must read every record back to the same values.
            for j in (0, len(records) // 2, len(records) - 1):
                feature = tf.train.Example.FromString(records[j]).features.feature
                row = shard + j * SHARDS
                for name, column in columns.items():
                    stored = getattr(feature[name], feature[name].WhichOneof("kind")).value
                    expected = _as_stored(np.atleast_1d(column[row]))
                    if not np.array_equal(np.asarray(stored, dtype=expected.dtype), expected):
                        raise AssertionError(f"{path}: record {j} does not parse to row {row} of the input ({name})")
        for name, column in columns.items():
            if not np.array_equal(got[0][name], got[1][name]):
                raise AssertionError(f"shard {shard}: the two writers' files parse to different values of {name}")
            if not np.array_equal(got[0][name], _as_stored(column[shard::SHARDS])):
                raise AssertionError(f"shard {shard}: the written values of {name} differ from the input")
    identical = all(Path(a).read_bytes() == Path(b).read_bytes() for a, b in zip(ours, theirs, strict=True))
    return "same values, byte-identical" if identical else "same values (protobuf ordered the feature map differently)"


# -- the run --------------------------------------------------------------------------------


def best_of(repeats: int, paths: dict[str, Callable[[], Callable[[], int]]]) -> dict[str, float]:
    """Best records/s of each path over ``repeats`` rounds, rotating the order each round.

    A path is a function that prepares a run (builds a dataset, say: not timed)
    and returns the run itself, which returns the number of records it handled.
    """
    names = list(paths)
    best = dict.fromkeys(names, 0.0)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = paths[name]()
            start = time.perf_counter()
            n = run()
            rate = n / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
            print(f"  round {r + 1}: {name:<22} {rate:>12,.0f} records/s", flush=True)
    return best


def compare_writers(
    repeats: int, spec: FeatureSpec, columns: dict[str, np.ndarray], baseline, prefix: Path, parse_spec
) -> tuple[dict[str, float], list[str]]:
    """Best records/s of the spec's writer and of ``baseline`` on ``columns``, their files checked
    (outside the timing); returns the rates and the spec writer's files."""
    records = len(columns["y"])
    ours_prefix, theirs_prefix = prefix / "ours" / "data", prefix / "baseline" / "data"
    theirs_prefix.parent.mkdir(parents=True)
    # Warm-up, outside the timing: first use of TFRecordWriter and of the spec's writer.
    write_spec(spec, ours_prefix, {name: c[:1024] for name, c in columns.items()})
    baseline(theirs_prefix, {name: c[:1024] for name, c in columns.items()})
    written: dict[str, list[str]] = {}

    def writing(name: str, write: Callable[[], list[str]]) -> Callable[[], Callable[[], int]]:
        def run() -> int:
            written[name] = write()
            return records

        return lambda: run

    writes = best_of(
        repeats,
        {
            "spec writer": writing("ours", lambda: write_spec(spec, ours_prefix, columns)),
            "tf.train.Example loop": writing("theirs", lambda: baseline(theirs_prefix, columns)),
        },
    )
    print(f"  files: {check_same_values(written['ours'], written['theirs'], columns, parse_spec)}", flush=True)
    return writes, written["ours"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records to write and read (default 200000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the best counts (default 3)")
    args = parser.parse_args(argv)
    if args.records < SHARDS * BATCH or args.repeats < 1:
        parser.error(f"--records must be at least {SHARDS * BATCH} and --repeats at least 1")

    import tensorflow as tf

    spec, mixed_spec = FeatureSpec.from_dict(SPEC), FeatureSpec.from_dict(MIXED_SPEC)
    columns, mixed = make_data(args.records), make_mixed(args.records)
    print(
        f"{args.records:,} records, {SHARDS} shards, batch {BATCH}, best of {args.repeats}; "
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="records-bench-") as tmp:
        print("write, numeric table (x: float32[32], y: int64):", flush=True)
        writes, files = compare_writers(
            args.repeats, spec, columns, write_baseline, Path(tmp, "numeric"), _hand_parse_spec()
        )
        print(f"write, mixed table (f0..f7: float32, city: string of {CITIES:,} values, y: int64):", flush=True)
        mixed_writes, _ = compare_writers(
            args.repeats, mixed_spec, mixed, write_mixed_baseline, Path(tmp, "mixed"), _mixed_parse_spec()
        )

        def reading(build: Callable[[], Any]) -> Callable[[], Callable[[], int]]:
            def prepare() -> Callable[[], int]:
                ds = build()  # building the pipeline (tracing its functions) is not timed
                return lambda: consume(ds)

            return prepare

        print("read (the spec writer's files of the numeric table):", flush=True)
        reads = best_of(
            args.repeats,
            {
                "spec.dataset eval": reading(lambda: read_spec(spec, files)),
                "hand-tuned tf.data": reading(lambda: read_tuned(files)),
                "naive tf.data": reading(lambda: read_naive(files)),
            },
        )

    example_loop = "tf.train.Example loop"
    rows = [
        ("numeric", "spec writer", writes["spec writer"], example_loop, writes[example_loop], 5.0),
        ("mixed", "spec writer", mixed_writes["spec writer"], example_loop, mixed_writes[example_loop], 10.0),
        (
            "numeric",
            "spec.dataset eval",
            reads["spec.dataset eval"],
            "hand-tuned tf.data",
            reads["hand-tuned tf.data"],
            0.95,
        ),
        ("numeric", "spec.dataset eval", reads["spec.dataset eval"], "naive tf.data", reads["naive tf.data"], 5.0),
    ]
    print()
    print(
        f"{'table':<8} {'path':<18} {'records/s':>11}  {'baseline':<22} {'records/s':>11}  {'ratio':>6}  {'target':>7}  result"
    )
    for table, name, rate, base, base_rate, target in rows:
        ratio = rate / base_rate
        verdict = "PASS" if ratio >= target else "FAIL"
        print(
            f"{table:<8} {name:<18} {rate:>11,.0f}  {base:<22} {base_rate:>11,.0f}  {ratio:>5.2f}x  "
            f"{'>=' + format(target, 'g') + 'x':>7}  {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
