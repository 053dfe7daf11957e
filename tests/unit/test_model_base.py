"""What ``factory serve PATH`` watches for each kind of PATH (``model_base``), and the model name an export was written for."""

from __future__ import annotations

import pytest

from factory.serving.manifest import PredictError, manifest_model_name, model_base


def tree(root):
    """A run dir with versions 1 and 2 of ``best`` (``current`` -> 2) and an empty ``final``."""
    for version in (1, 2):
        (root / "export" / "best" / str(version)).mkdir(parents=True)
        (root / "export" / "best" / str(version) / "saved_model.pb").write_bytes(b"")
    (root / "export" / "best" / "current").symlink_to("2")
    (root / "config.yaml").write_text("seed: 0\n")
    return root


def test_each_kind_of_path_stands_for_a_policy_dir_and_one_version_for_itself(tmp_path):
    run = tree(tmp_path / "run")
    best = run / "export" / "best"
    assert model_base(run) == (best, None)
    assert model_base(run / "export") == (best, None)
    assert model_base(best) == (best, None)
    assert model_base(best / "1") == (best, best / "1")
    assert model_base(best / "1" / "saved_model.pb") == (best, best / "1")
    assert model_base(best / "current") == (best, best / "2")  # the version it points at now


def test_a_run_that_has_not_exported_yet_is_watched_for_its_first_best_version(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    assert model_base(run) == (run / "export" / "best", None)


@pytest.mark.parametrize("make, text", [(None, "does not exist"), ("file", "is a file"), ("dir", "not a run dir")])
def test_paths_that_are_none_of_these_are_refused_with_what_to_pass(tmp_path, make, text):
    path = tmp_path / "thing"
    if make == "file":
        path.write_text("x")
    elif make == "dir":
        path.mkdir()
    with pytest.raises(PredictError, match=text):
        model_base(path)


def test_the_model_name_comes_from_the_manifest_and_older_manifests_name_it_in_their_url():
    assert manifest_model_name({"serving": {"model_name": "digits"}}) == "digits"
    assert manifest_model_name({"serving": {"rest_url": "http://localhost:8501/v1/models/old:predict"}}) == "old"
    assert manifest_model_name({}) is None
