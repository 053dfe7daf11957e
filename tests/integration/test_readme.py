"""The README's commands, executed in order in a scratch directory, so the README cannot go stale.

Every ```bash and ```python block runs (```console blocks are reference syntax for tools that are not
here, such as docker and curl). The quick start (`make run`, `make test`) is skipped: it is what CI
itself runs. `factory-train` lines get tiny settings appended so the whole README runs in about a
minute; a line commented `# exits 2` must exit with status 2. A python block starting with
`# file: NAME` is written to NAME instead of being run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers

REPO = helpers.REPO
TINY = "train.max_steps=20 train.eval_every_steps=10 train.steps_per_execution=5 train.progress=none"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall((REPO / "README.md").read_text())]


def shrink(script: str) -> str:
    """Tiny settings for every factory-train line; `# exits 2` lines must fail with status 2."""
    out = []
    for line in script.splitlines():
        command, _, comment = line.partition("  #")
        if line.startswith("factory-train"):
            if "exits 2" in comment:
                line = f"if {command.strip()}; then exit 1; else test $? -eq 2; fi"
            else:
                line = f"{command.rstrip()} {TINY}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_readme_has_a_quick_start_of_two_commands():
    quick = blocks()[0][1].split("\n")
    commands = [line.split("#")[0].strip() for line in quick if line.strip()]
    assert commands == ["make run", "make test"]


@pytest.mark.timeout(1500)
def test_every_readme_command_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "conf").symlink_to(REPO / "conf")
    env = {k: v for k, v in os.environ.items() if k not in ("FACTORY_CACHE", "PYTHONPATH")}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    ran = 0
    for i, (lang, body) in enumerate(blocks()):
        if i == 0 or lang not in ("bash", "python"):
            continue
        if lang == "python" and body.startswith("# file: "):
            name = body.splitlines()[0][len("# file: ") :].strip()
            (work / name).write_text(body)
            continue
        argv = ["bash", "-euo", "pipefail", "-c", shrink(body)] if lang == "bash" else [sys.executable, "-c", body]
        result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, (
            f"README block {i} ({lang}) failed:\n{body}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        ran += 1
    assert ran >= 10

    # What the tour promised is there.
    assert (work / "runs" / "iris" / "export" / "best" / "current" / "saved_model.pb").exists()
    # ...and "Train on your own data": a proposed config that trained, statistics kept, class names out.
    assert 'column: "od280/od315_of_diluted_wines"' in (work / "my_conf" / "features" / "wine.yaml").read_text()
    assert (work / "runs" / "wine" / "export" / "best" / "current" / "assets.extra" / "statistics.json").exists()
    predictions = [json.loads(line) for line in (work / "wine_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 178 and {p["classes"] for p in predictions} <= {"class_0", "class_1", "class_2"}
    assert (work / "runs" / "towers" / "summary.json").exists()
    with open(work / "multirun" / "iris" / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (work / "multirun" / "iris" / "sweep.png").read_bytes().startswith(b"\x89PNG")
    assert (work / "multirun" / "iris" / "sweep.yaml").is_file()
    assert (work / "multirun" / "digits" / "optuna.journal").is_file()
    predictions = [json.loads(line) for line in (work / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 30 and {"index", "class_ids", "probabilities", "classes"} <= set(predictions[0])
    assert {p["classes"] for p in predictions} <= {"setosa", "versicolor", "virginica"}
    assert len([p for p in (work / "multirun" / "dropout").iterdir() if p.name.isdigit()]) == 2
    # ...and "Columns of every kind": the title's words learnt before training, the raw columns served.
    movies = work / "runs" / "movies"
    stats = json.loads((movies / "statistics.json").read_text())["features"]
    assert len(stats["title"]["text"]["vocabulary"]) == 3707 and len(stats["year"]["bins"]) == 7
    child = (
        "import sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](title=tf.constant(['Toy Story']), director=tf.constant(['John Lasseter']),"
        " year=tf.constant([1995], tf.int64), runtime=tf.constant([81.0]), genre=tf.constant(['Animation']))\n"
        "print(float(out['probability'].numpy()[0]))\n"
    )
    served = subprocess.run(
        [sys.executable, "-c", child, str(movies / "export" / "best" / "current")], capture_output=True, text=True
    )
    assert served.returncode == 0 and 0.0 < float(served.stdout) < 1.0, served.stderr[-2000:]
    # The README's numbers come from the shipped experiment as it is, not from the tiny settings above.
    full = subprocess.run(
        ["factory-train", "experiment=movies", "train.progress=none", "hydra.run.dir=runs/movies_full"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr[-3000:]
    test = json.loads((work / "runs" / "movies_full" / "summary.json").read_text())["test"]
    assert test["test_auc"] >= 0.66 and test["test_accuracy"] >= 0.63, test  # README: about 0.70 and 0.67
