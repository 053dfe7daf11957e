"""The ``factory`` command line.

Each subcommand is a pair of small functions, one adding its arguments and one
running it, listed in ``COMMANDS``; add a ``Command`` there to add a
subcommand. Every command validates its config before TensorFlow is imported,
so a typo costs a fraction of a second, and a ``FactoryError`` is printed as
``error: <message>`` with exit status 2 instead of a traceback (Ctrl-C exits
with 130).

    factory write --features conf/features/x.yaml --input data.csv --output out/train --shards 4
    factory check --features conf/features/x.yaml 'out/train-*'
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from factory.cli import check, convert, init, predict, records, serve, stats, summarize
from factory.errors import FactoryError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``arguments`` adds its options to its parser, ``run`` executes it and returns the exit status."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


COMMANDS: list[Command] = [
    Command(
        "write",
        "write TFRecord shards from a CSV, JSON Lines or NPZ file",
        records.write_arguments,
        records.run_write,
        records.WRITE_EPILOG,
    ),
    Command(
        "check",
        "check every record against the feature spec; with --against, compare them with a model's training data",
        check.arguments,
        check.run,
        check.EPILOG,
    ),
    Command(
        "stats",
        "summarise record files per feature and show the `auto` statistics training would compute",
        stats.arguments,
        stats.run,
        stats.EPILOG,
    ),
    Command(
        "predict",
        "run an export on a JSON Lines, CSV, NPZ or TFRecord file; predictions as JSON Lines",
        predict.arguments,
        predict.run,
        predict.EPILOG,
    ),
    Command(
        "serve",
        "serve an export tree with TF Serving's REST API: versions, dynamic batching, warmup, metrics",
        serve.arguments,
        serve.run,
        serve.EPILOG,
    ),
    Command(
        "convert",
        "convert an export's serving_default to TFLite or ONNX, checked against the SavedModel on eval records",
        convert.arguments,
        convert.run,
        convert.EPILOG,
    ),
    Command(
        "init",
        "propose a feature spec and a config dir from a CSV, JSON Lines, NPZ or TFRecord file",
        init.arguments,
        init.run,
        init.EPILOG,
    ),
    Command(
        "summarize",
        "tabulate the trials of a sweep, best first, as CSV; --plot draws their curves",
        summarize.arguments,
        summarize.run,
        summarize.EPILOG,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory", description="A declarative, config-driven model factory for TensorFlow."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=command.epilog or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0 ok, 2 user error or bad usage, 130 interrupted).

    ``argv`` defaults to ``sys.argv[1:]``.
    """
    # Before any TensorFlow import: keep its C++ log lines and the oneDNN notice off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return args.run(args)
    except SystemExit as stop:  # argparse: --help (0) or bad usage (2)
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    except FactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`factory stats ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
