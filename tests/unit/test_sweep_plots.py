"""`factory summarize --plot`: the picture of a sweep, checked on the figure it draws and on the PNG file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from factory.sweeps.plots import log_scale, numeric_values, sweep_figure, swept_parameters
from factory.sweeps.results import read_sweep
from tests.helpers import REPO
from tests.unit.test_sweeps import make_trial, summarize

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install 'factory[sweeps]')"
)
SHARED = ("network=mlp", "train.max_steps=100")


def evaluations(values: list[float], every: int = 20) -> list[dict]:
    """metrics.jsonl rows as MetricsLog writes them, monitoring val_accuracy."""
    rows, best = [], None
    for number, value in enumerate(values, start=1):
        best = value if best is None else max(best, value)
        rows.append(
            {
                "eval": number,
                "step": number * every,
                "val_loss": 2.0 - value,
                "val_accuracy": value,
                "best": best,
                "wait": 0,
                "stop": False,
                "seconds": number * 0.5,
            }
        )
    return rows


def trial(root: Path, name: str, lr: str, hidden: str, values: list[float], *, finished=True, pruned=False) -> Path:
    overrides = (*SHARED, f"train.optimizer.learning_rate={lr}", f"network.hidden={hidden}")
    run = make_trial(
        root, name, max(values) if finished else None, overrides=overrides, evaluations=evaluations(values)
    )
    if pruned:
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "pruned": True}))
    return run


def four_trials(root: Path) -> None:
    trial(root, "0", "0.0001", "[32]", [0.2, 0.3, 0.4, 0.5, 0.55])
    trial(root, "1", "0.001", "[64,64]", [0.5, 0.7, 0.8, 0.85, 0.84])  # the best: 0.85 at step 80
    trial(root, "2", "0.03", "[32]", [0.3, 0.35], pruned=True)  # stopped after two evaluations
    trial(root, "3", "0.01", "[64,64]", [0.6, 0.75, 0.8], finished=False)  # interrupted


def curves(figure):
    """{label: line} of the learning-curve axes (markers without a label left out)."""
    return {line.get_label(): line for line in figure.axes[0].lines if not line.get_label().startswith("_")}


@needs_matplotlib
def test_learning_curves_show_every_trial_pruned_dashed_and_the_best_highlighted(tmp_path):
    four_trials(tmp_path)
    figure = sweep_figure(read_sweep(tmp_path), name="sweep")
    lines = curves(figure)
    assert list(lines) == [
        "trial 1: learning_rate=0.001 hidden=[64,64] (best)",
        "trial 0: learning_rate=0.0001 hidden=[32]",
        "trial 2: learning_rate=0.03 hidden=[32] (pruned)",
        "trial 3: learning_rate=0.01 hidden=[64,64] (interrupted)",
    ]
    best, ranked, pruned, interrupted = lines.values()
    assert list(best.get_xdata()) == [20, 40, 60, 80, 100]
    assert list(best.get_ydata()) == [0.5, 0.7, 0.8, 0.85, 0.84]
    assert best.get_color() == "tab:red" and best.get_linewidth() > ranked.get_linewidth()
    assert [pruned.get_linestyle(), interrupted.get_linestyle()] == ["--", ":"]
    assert ranked.get_linestyle() == "-" and list(pruned.get_xdata()) == [20, 40]
    [star] = [line for line in figure.axes[0].lines if line.get_marker() == "*"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([80], [0.85])  # the best evaluation
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("step", "val_accuracy (eval)")
    assert "higher is better" in axes.get_title()
    assert figure.get_suptitle() == "sweep: 4 trials, best: trial 1 (val_accuracy 0.85)"


@needs_matplotlib
def test_one_panel_per_swept_parameter_numbers_on_a_log_axis_and_categories(tmp_path):
    four_trials(tmp_path)
    figure = sweep_figure(read_sweep(tmp_path))
    assert len(figure.axes) == 3  # curves, then learning_rate and hidden; the shared overrides are not swept
    lr, hidden = figure.axes[1:]
    assert (lr.get_xlabel(), lr.get_ylabel(), lr.get_xscale()) == (
        "train.optimizer.learning_rate",
        "best val_accuracy",
        "log",  # 0.0001 to 0.03: more than two decades
    )
    points = sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in lr.lines)
    assert points == [(0.0001, 0.55), (0.001, 0.85), (0.01, 0.8), (0.03, 0.35)]
    assert (hidden.get_xlabel(), hidden.get_xscale()) == ("network.hidden", "linear")
    assert [t.get_text() for t in hidden.get_xticklabels()] == ["[32]", "[64,64]"]
    points = sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in hidden.lines)
    assert points == [(0, 0.35), (0, 0.55), (1, 0.8), (1, 0.85)]  # at the categories' positions
    hollow = [line for line in lr.lines if line.get_markerfacecolor() == "none"]
    assert sorted(line.get_xdata()[0] for line in hollow) == [0.01, 0.03]  # pruned and interrupted


@pytest.mark.parametrize(
    ("values", "log"),
    [([0.0001, 0.01], False), ([0.0001, 0.0101], True), ([1, 1000], True), ([-1, 1000], False), ([0, 10], False)],
)
def test_an_axis_is_logarithmic_beyond_two_decades(values, log):
    assert log_scale(values) is log


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1e-3", "64", None, "-0.5", ".5"], [0.001, 64.0, None, -0.5, 0.5]),
        (["[64,64]", "32"], None),
        (["true", "false"], None),
        (["adam", "sgd"], None),
        ([None], None),
    ],
)
def test_parameters_are_numbers_only_when_every_value_is(values, expected):
    assert numeric_values(values) == expected


def test_swept_parameters_are_the_overrides_that_differ(tmp_path):
    make_trial(tmp_path, "0", 0.5, overrides=("network=mlp", "+train.seed=1", "network.dropout=0.1"))
    make_trial(tmp_path, "1", 0.6, overrides=("network=mlp", "network.dropout=0.2"))
    swept = swept_parameters(sorted(read_sweep(tmp_path), key=lambda t: t.name))
    assert swept == {"train.seed": ["1", None], "network.dropout": ["0.1", "0.2"]}


@needs_matplotlib
def test_summarize_plot_writes_a_png_beside_the_table(tmp_path, capsys):
    four_trials(tmp_path)
    code, out, _ = summarize(str(tmp_path), "--no-csv", "--plot", capsys=capsys)
    assert code == 0
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'sweep.png'}"
    png = tmp_path / "sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    height, width, _ = imread(png).shape  # decodes: a whole PNG
    assert width > 1000 and height > 600
    code, out, _ = summarize(str(tmp_path), "--no-csv", f"--plot={tmp_path / 'elsewhere.png'}", capsys=capsys)
    assert code == 0 and (tmp_path / "elsewhere.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["elsewhere.png", "sweep.png"]


def test_a_sweep_without_evaluations_is_a_user_error(tmp_path, capsys):
    make_trial(tmp_path, "0", 0.5)  # a summary, but no metrics.jsonl
    make_trial(tmp_path, "1", None)
    code, out, err = summarize(str(tmp_path), "--no-csv", "--plot", capsys=capsys)
    assert code == 2
    assert "error: no trial has an evaluation in metrics.jsonl yet: nothing to plot" in err
    assert out.startswith("rank") and not (tmp_path / "sweep.png").exists()


# A finder that makes `import matplotlib` fail as on a machine without it.
WITHOUT_MATPLOTLIB = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from factory.cli import main
print("table", main(["summarize", sys.argv[1], "--no-csv"]), "matplotlib" in sys.modules)
print("plot", main(["summarize", sys.argv[1], "--no-csv", "--plot"]))
"""


def test_without_matplotlib_the_table_works_and_plot_says_what_to_install(tmp_path):
    four_trials(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    lines = out.stdout.splitlines()
    assert "table 0 False" in lines, out.stdout + out.stderr
    assert lines[-1] == "plot 2"
    assert "pip install 'factory[sweeps]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "sweep.png").exists()
