"""A sweep's trials in TensorBoard's HParams dashboard: the session-start info each trial writes,
read back with TensorBoard's own record reader and its HParams backend, without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from factory.sweeps.hparams import hparams_files, read_trial_hparams, write_trial_hparams
from tests.helpers import REPO


def events(path: Path) -> list[event_pb2.Event]:
    """The events of one file, through TensorBoard's TensorFlow-free record reader (CRCs checked)."""
    reader = PyRecordReader_New(str(path))
    out = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return out
        out.append(event_pb2.Event.FromString(reader.record()))


def start_info(run_dir: Path):
    [path] = hparams_files(run_dir)
    values = [v for e in events(path) for v in e.summary.value if v.tag == metadata.SESSION_START_INFO_TAG]
    assert len(values) == 1
    assert values[0].metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
    return metadata.parse_session_start_info_plugin_data(values[0].metadata.plugin_data.content)


def write_eval_scalars(run_dir: Path, rows: list[dict]) -> None:
    """``RUN_DIR/tensorboard/eval`` as the trial's summaries leave it: one float scalar per metric and evaluation."""
    directory = run_dir / "tensorboard" / "eval"
    directory.mkdir(parents=True)
    with open(directory / "events.out.tfevents.1700000000.host.1.0.v2", "wb") as f:
        writer = RecordWriter(f)
        writer.write(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())
        for row in rows:
            for tag, value in row.items():
                if tag != "step":
                    summary = scalar_pb(tag, value)
                    event = event_pb2.Event(wall_time=1.0 + row["step"], step=row["step"], summary=summary)
                    writer.write(event.SerializeToString())


HPARAMS = {
    "0": {"train.optimizer.learning_rate": 0.001, "network.hidden": "[64,64]", "train.batch_size": 32},
    "1": {"train.optimizer.learning_rate": 0.01, "network.hidden": "[32]", "train.batch_size": 64},
}


def two_trials(sweep: Path) -> None:
    for name, hparams in HPARAMS.items():
        rows = [{"step": 20, "val_accuracy": 0.5, "val_loss": 1.2}, {"step": 40, "val_accuracy": 0.7 + int(name) / 10}]
        write_eval_scalars(sweep / name, rows)
        write_trial_hparams(sweep / name, hparams, trial_id=f"sweep/{name}")


def test_each_trial_holds_its_hparams_as_session_start_info(tmp_path):
    two_trials(tmp_path)
    for name, hparams in HPARAMS.items():
        info = start_info(tmp_path / name)
        assert info.group_name == f"sweep/{name}"
        assert info.start_time_secs == pytest.approx(time.time(), abs=60)
        assert {k: v.WhichOneof("kind") for k, v in info.hparams.items()} == {
            "train.optimizer.learning_rate": "number_value",
            "network.hidden": "string_value",
            "train.batch_size": "number_value",
        }
        assert info.hparams["train.optimizer.learning_rate"].number_value == hparams["train.optimizer.learning_rate"]
        assert info.hparams["network.hidden"].string_value == hparams["network.hidden"]
        assert read_trial_hparams(tmp_path / name) == info
    path = hparams_files(tmp_path / "0")[0]
    assert path.parent == tmp_path / "0" / "tensorboard" and "tfevents" in path.name  # a run TensorBoard reads


# The HParams plugin's own backend over the sweep dir, as `tensorboard --logdir SWEEP` serves it.
# TensorBoard's `notf` mode (its TensorFlow stub) reads the event files without TensorFlow.
DASHBOARD = """
import json, sys, types
sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
logdir = sys.argv[1]
mux = plugin_event_multiplexer.EventMultiplexer()
mux.AddRunsFromDirectory(logdir)
mux.Reload()
tb = base_plugin.TBContext(logdir=logdir, data_provider=data_provider.MultiplexerDataProvider(mux, logdir))
request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_UNKNOWN])
groups = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb), "", request).run()
print(json.dumps({
    "groups": {
        g.name: {
            "sessions": [s.name for s in g.sessions],
            "hparams": {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in g.hparams.items()},
            "metrics": {f"{m.name.group}/{m.name.tag}": [m.value, m.training_step] for m in g.metric_values},
        }
        for g in groups.session_groups
    },
    "tensorflow": "tensorflow" in sys.modules,
}))
"""


def dashboard(logdir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", DASHBOARD, str(logdir)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_hparams_dashboard_shows_one_row_per_trial_with_its_monitored_metric(tmp_path):
    two_trials(tmp_path / "sweep")
    for logdir, session in ((tmp_path / "sweep", "{}/tensorboard"), (tmp_path, "sweep/{}/tensorboard")):
        shown = dashboard(logdir)
        assert not shown["tensorflow"]
        assert sorted(shown["groups"]) == ["sweep/0", "sweep/1"]
        for name, hparams in HPARAMS.items():
            group = shown["groups"][f"sweep/{name}"]
            assert group["sessions"] == [session.format(name)]
            assert group["hparams"] == hparams
            # The metric of the row: the last evaluation's value of eval/<monitor>, matched below the session.
            assert group["metrics"]["eval/val_accuracy"] == [pytest.approx(0.7 + int(name) / 10), 40]
            assert group["metrics"]["eval/val_loss"] == [pytest.approx(1.2), 20]


def test_writing_again_is_idempotent_and_new_values_replace_the_old(tmp_path):
    run = tmp_path / "0"
    hparams = {"train.optimizer.learning_rate": 0.01, "augment": True}
    first = write_trial_hparams(run, hparams, "s/0")
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    assert write_trial_hparams(run, dict(reversed(hparams.items())), "s/0") is None  # a resumed trial
    assert hparams_files(run) == [first]
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before

    second = write_trial_hparams(run, {**hparams, "train.max_steps": 400}, "s/0")
    assert hparams_files(run) == [second] and second != first  # one session still: the old file is gone
    info = start_info(run)
    assert info.hparams["train.max_steps"].number_value == 400
    assert info.hparams["augment"].bool_value is True
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == [second.name]  # nothing staged is left


@pytest.mark.parametrize(
    ("hparams", "trial_id", "expected"),
    [
        ({"a": [64, 64]}, "t", "hparams['a']: expected a bool, int, float or str, got list"),
        ({"a": None}, "t", "got NoneType"),
        ({"a": 1}, "", "trial_id: expected a non-empty string"),
    ],
)
def test_values_of_other_types_are_refused_before_anything_is_written(tmp_path, hparams, trial_id, expected):
    with pytest.raises(TypeError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        write_trial_hparams(tmp_path, hparams, trial_id)
    assert not (tmp_path / "tensorboard").exists()


def test_writing_hparams_loads_no_tensorflow(tmp_path):
    code = f"""
import sys
from factory.sweeps.hparams import write_trial_hparams
write_trial_hparams({str(tmp_path)!r}, {{"lr": 0.1}}, "t")
print("tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
