"""``factory init``: a feature spec and a ready Hydra config dir proposed from a data file.

    factory init wine.csv --label target --output conf
    -> conf/features/wine.yaml, conf/data/wine.yaml, conf/experiment/wine.yaml

The decisions are ``factory.features.infer``'s; this module writes them as YAML a person can
review (every decision with its reason as a comment), picks the network and the training
settings from the row count, and prints the commands that write the records and train.
Nothing is written unless every file can be; existing files are kept unless ``--overwrite``.
No TensorFlow, except to read record files.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import shlex
from pathlib import Path

import yaml

from factory.cli.args import positive_int
from factory.errors import ConfigError, FactoryError
from factory.features import infer, table_sample
from factory.features.spec import FeatureSpec
from factory.names import EVAL_PREFIX
from factory.run_dir import write_text
from factory.validation import resource_dir

# The config groups written, each as GROUP/NAME.yaml.
GROUPS = ("features", "data", "experiment")
# The split `factory write --split` makes, and the record sets the data config reads.
SPLIT = {"train": 0.8, "eval": 0.1, "test": 0.1}
# Comments start in this column at most (longer keys push theirs further right).
_COMMENT_COLUMN = 36
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
# The metric early stopping watches, by task: accuracy rewards the majority class of an
# unbalanced binary label, the ranking (AUC) does not.
MONITOR = {"classification": "accuracy", "binary": "auc", "regression": "mae"}
# What the data config says when no held-out records were found beside the given ones.
NO_EVAL = (
    "no eval records were found beside them, so the model is evaluated on its training records: "
    "point `eval` at held-out records"
)
# Training runs at most this many epochs (early stopping usually ends it sooner).
EPOCHS = 100
# scikit-learn's reference models (`compare_with`), by task.
REFERENCE = {"classification": "logistic", "regression": "ridge"}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", nargs="+", metavar="INPUT", help="a .csv, .jsonl, .parquet or .npz file, or TFRecord files/globs"
    )
    parser.add_argument("--label", metavar="COLUMN", help="the column to predict (its header in the input)")
    parser.add_argument("--output", required=True, metavar="DIR", help="the config dir to write (for --config-dir)")
    parser.add_argument("--name", help="the experiment's name (default: the input file's name)")
    parser.add_argument("--records", metavar="DIR", help="where the records go (default: data/NAME)")
    parser.add_argument("--format", choices=table_sample.FORMATS, help="input format (default: from the extension)")
    parser.add_argument(
        "--sample-rows",
        type=positive_int,
        default=table_sample.SAMPLE_ROWS,
        metavar="N",
        help=f"rows sampled to decide types and vocabularies (default: {table_sample.SAMPLE_ROWS})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files (default: refuse)")


def _shipped(name: str) -> list[str]:
    """factory's own configs named ``name``: a ``--config-dir`` cannot override them (Hydra reads its
    primary config dir first), so the proposal must take another name."""
    conf = resource_dir("conf")
    return [f"conf/{group}/{name}.yaml" for group in GROUPS if (conf / group / f"{name}.yaml").exists()]


def _name(args: argparse.Namespace, format: str) -> str:
    """``--name``, or the input file's name (``iris_csv`` where factory ships an ``iris`` of its own)."""
    if args.name is not None:
        if not infer.VALID_NAME.match(args.name):
            raise ConfigError(f"--name: {args.name!r} is not a valid name; try {infer.snake_name(args.name, 'data')}")
        if shipped := _shipped(args.name):
            raise ConfigError(
                f"--name: factory ships {', '.join(shipped)}, which a --config-dir cannot override; pick another name"
            )
        return args.name
    first = Path(args.input[0])
    name = infer.snake_name((first.parent.name if format == "tfrecord" else first.stem) or "data", "data")
    return f"{name}_{format}" if _shipped(name) else name


def _flow(value) -> str:
    """A value as YAML flow text (JSON's quoting where a plain scalar would be read differently)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


def _lines(pairs: list[tuple[str, str]], indent: str) -> list[str]:
    """``key: value`` lines with their comments aligned."""
    width = min(max((len(text) for text, why in pairs if why), default=0), _COMMENT_COLUMN)
    return [f"{indent}{text.ljust(width)}  # {why}" if why else f"{indent}{text}" for text, why in pairs]


def _entry(d: infer.Decision) -> list[str]:
    """The entry's ``key: value`` lines, each with its reason, then its alternatives commented out."""
    pairs = [(f"{key}: {_flow(value)}", d.why.get(key, "")) for key, value in d.entry.items()]
    pairs += [(f"# {key}: {_flow(value)}", why) for key, value, why in d.alternatives]
    return [f"  {d.name}:", *_lines(pairs, "    ")]


def features_yaml(p: infer.Proposal, source: str) -> str:
    t = p.table
    read = f"{t.rows} rows" if t.complete else f"the first {t.rows} rows"
    sample = "every row" if p.sampled >= t.rows else f"a uniform sample of {p.sampled} rows"
    lines = [
        f"# Proposed by `factory init` from {source} ({read}, {len(t.headers)} columns), decided on {sample}.",
        "# Numbers are standardised with the mean and std of the training records (`normalize: auto`).",
        "# Review the comments, then write the records.",
        "features:",
    ]
    for d in p.features:
        lines += _entry(d)
    lines += ["labels:", *_entry(p.label)]
    if p.left_out:
        lines += ["", "# Left out (add them by hand if they should be inputs):"]
        lines += [f"#   {d.header}: {d.note}" for d in p.left_out]
    return "\n".join(lines) + "\n"


def _record_sets(inputs: list[str], format: str, records: str) -> tuple[dict[str, str | list | None], str]:
    """The data config's globs and a comment on where they come from. Record files given as
    ``.../train-*`` find their ``eval`` (or ``valid``, ``val``) and ``test`` siblings."""
    if format != "tfrecord":
        return {split: f"{records}/{split}-*.tfrecord" for split in SPLIT}, "split and written by `factory write`"
    train = inputs[0] if len(inputs) == 1 else inputs
    sets: dict[str, str | list | None] = {"train": train, "eval": None, "test": None}
    if len(inputs) == 1 and "train" in inputs[0]:
        head, _, tail = inputs[0].rpartition("train")
        for split, words in (("eval", ("eval", "valid", "validation", "val")), ("test", ("test",))):
            sets[split] = next((head + w + tail for w in words if glob.glob(head + w + tail)), None)
    found = [split for split in ("eval", "test") if sets[split]]
    why = "the records given" + (f", and the {' and '.join(found)} records beside them" if found else "")
    if sets["eval"] is None:
        sets["eval"] = train
        why += f"; {NO_EVAL}"
    return sets, why


def data_yaml(name: str, sets: dict, why: str, write_command: str | None) -> str:
    lines = [f"# Records for the `{name}` experiment: {why}."]
    if not all(Path(v).is_absolute() for v in sets.values() if isinstance(v, str)):
        lines += ["# Relative paths start where factory-train runs."]
    if write_command:
        lines += ["# Written by:", f"#   {write_command}"]
    lines += [f"{split}: {_flow(value)}" for split, value in sets.items()]
    return "\n".join(lines) + "\n"


def _nice(x: float) -> int:
    """``x`` rounded up to 1, 2 or 5 times a power of ten."""
    power = 10 ** math.floor(math.log10(max(x, 1)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x)


def experiment_yaml(name: str, p: infer.Proposal, training_rows: int) -> str:
    t, label = p.table, p.label
    images = [d.name for d in p.features if d.entry.get("encoding")]
    batch = min(256, max(16, 2 ** round(math.log2(max(training_rows, 1) / 50))))
    epoch = math.ceil(training_rows / batch)
    every = min(1000, _nice(max(50, 2 * epoch)))
    steps = min(100_000, every * math.ceil(max(EPOCHS * epoch, 10 * every) / every))
    classes = label.entry.get("num_classes") or len(label.entry.get("vocabulary", ())) or 2
    what = {"classification": f"one of {classes} classes", "binary": "0 or 1", "regression": "a number"}[p.task]
    often = f"about every {round(every / epoch)} epochs" if every >= epoch else f"{every / epoch:.0%} of an epoch"
    lines = [
        "# @package _global_",
        f"# Proposed by `factory init` for {t.path}: predict {label.header!r} ({what}) from "
        f"{len(p.features)} feature{'s' * (len(p.features) > 1)}.",
        "defaults:",
        f"  - override /features: {name}",
        f"  - override /network: {'cnn' if images else 'mlp'}",
        f"  - override /data: {name}",
    ]
    if images:
        lines += [f"# cnn: a convolution tower on {', '.join(images)}, the other features joined after it."]
    else:
        hidden = [64] if t.rows < 1000 else [128, 64]
        why = f"{t.rows} rows: " + (
            "one small layer, as more overfits a small table" if len(hidden) == 1 else "two layers"
        )
        lines += ["network:", *_lines([(f"hidden: {_flow(hidden)}", why)], "  ")]
    lines += ["train:"]
    lines += _lines(
        [
            (f"batch_size: {batch}", f"{training_rows} training rows: {epoch} steps an epoch"),
            (f"max_steps: {steps}", f"at most {steps // epoch} epochs; early stopping usually ends sooner"),
            (f"eval_every_steps: {every}", often),
        ],
        "  ",
    )
    monitor = EVAL_PREFIX + MONITOR[p.task]
    lines += ["early_stop:", *_lines([(f"monitor: {monitor}", f"{label.header} is {what}")], "  ")]
    lines += ["  patience: 5"]
    if p.task in REFERENCE:
        lines += [f"# compare_with: [{REFERENCE[p.task]}]  # scikit-learn's reference model, fitted on the same split"]
    return "\n".join(lines) + "\n"


def _command(*words: str) -> str:
    return " ".join(shlex.quote(w) if i else w for i, w in enumerate(words))


def run(args: argparse.Namespace) -> int:
    format = table_sample.input_format(args.input, args.format)
    name = _name(args, format)
    out = Path(args.output)
    paths = {group: out / group / f"{name}.yaml" for group in GROUPS}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.overwrite:
        raise FactoryError(f"{', '.join(existing)} exist already; pass --overwrite to replace them, or another --name")
    table = table_sample.read_table(args.input, format, args.label, args.sample_rows)
    proposal = infer.infer_spec(table, args.label)
    records = args.records or f"data/{name}"
    features_text = features_yaml(proposal, table.path)
    # The proposal must load as it is: a spec that fails here is factory's bug, not the data's.
    FeatureSpec.from_dict(yaml.safe_load(features_text), source=str(paths["features"]))
    write = None
    if format != "tfrecord":
        split = ",".join(f"{k}={v}" for k, v in SPLIT.items())
        write = _command(
            "factory", "write", "--features", str(paths["features"]), "--input", args.input[0], "--output", records,
            "--split", split, *(["--ignore-unknown"] if proposal.left_out else []),  # the columns left out
        )  # fmt: skip
    sets, why = _record_sets(args.input, format, records)
    training = table.rows if format == "tfrecord" else round(table.rows * SPLIT["train"])
    texts = {
        "features": features_text,
        "data": data_yaml(name, sets, why, write),
        "experiment": experiment_yaml(name, proposal, training),
    }
    for group, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, texts[group])
    _report(proposal, paths, write, _command("factory-train", "--config-dir", str(out), f"experiment={name}"))
    if NO_EVAL in why:
        print(f"note: {NO_EVAL} (in {paths['data']})")
    return 0


def _report(p: infer.Proposal, paths: dict[str, Path], write: str | None, train: str) -> None:
    task = p.task + (f", {p.label.entry['num_classes']} classes" if "num_classes" in p.label.entry else "")
    features = f"{len(p.features)} feature{'s' * (len(p.features) > 1)}"
    print(f"{p.table.path}: {p.table.rows} rows; label '{p.label.name}' ({task}), {features}")
    for d in p.features:
        shape = "[" + ", ".join("null" if s is None else str(s) for s in d.entry["shape"]) + "]"
        column = f"  (column {d.header!r})" if d.name != d.header else ""
        print(f"  {d.name}: {d.entry['dtype']} {shape}{column}")
    for d in p.left_out:
        print(f"  left out {d.header!r}: {d.note}")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    print("next:")
    for command in (write, train):
        if command:
            print(f"  {command}")


EPILOG = """\
Each column becomes a feature: numbers (float32, int64; standardised), vectors and
variable-length lists, strings with a vocabulary (hash buckets past 1000 distinct values),
ids and codes in hash buckets, free text and short phrases (`text:`), PNG/JPEG images
(bytes, .npz uint8 arrays or image file paths); blank cells get a `missing:` fill. Columns
that cannot be inputs (identifiers, constants) are left out and named. Every decision is a
comment in the YAML written: review it, then run the commands printed.
"""
