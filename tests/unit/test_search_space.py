"""The Optuna sweeper's search space: Hydra's sweep grammar as Optuna distributions (no TensorFlow)."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from factory.errors import ConfigError
from factory.sweeps.search_space import parse_search_space


def one(text: str):
    space = parse_search_space([text])
    assert len(space.params) == 1 and not space.fixed
    return next(iter(space.params.values()))


@pytest.mark.parametrize(
    ("text", "distribution"),
    [
        ("lr=interval(0.001, 0.1)", FloatDistribution(0.001, 0.1)),
        ("lr=interval(0, 1.0)", FloatDistribution(0.0, 1.0)),  # one end a float: floats
        ("lr=interval(1e-4, 1e-2)", FloatDistribution(0.0001, 0.01)),
        ("n=interval(16, 128)", IntDistribution(16, 128)),  # both ends ints: ints
        ("lr=tag(log, interval(0.0003, 0.01))", FloatDistribution(0.0003, 0.01, log=True)),
        ("n=tag(log, interval(1, 1024))", IntDistribution(1, 1024, log=True)),
        ("n=range(1, 10, 3)", IntDistribution(1, 7, step=3)),  # Python's range: 1, 4, 7
        ("n=range(5)", IntDistribution(0, 4)),
        ("n=range(10, 0, -2)", IntDistribution(2, 10, step=2)),
        ("n=shuffle(range(1, 4))", IntDistribution(1, 3)),
        ("n=tag(log, range(1, 100))", IntDistribution(1, 99, log=True)),
        ("x=range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("opt=choice(adam, sgd)", CategoricalDistribution(["adam", "sgd"])),
        ("opt=adam,sgd", CategoricalDistribution(["adam", "sgd"])),
        ("b=choice(32, 64, 32)", CategoricalDistribution([32, 64])),  # a repeated value is one choice
        ("f=choice(true, 1, 1.5, x)", CategoricalDistribution([True, 1, 1.5, "x"])),
    ],
)
def test_each_sweep_is_its_optuna_distribution(text, distribution):
    assert one(text).distribution == distribution


def test_lists_and_dicts_in_a_choice_are_their_override_text_and_come_back_as_written():
    param = one("network.hidden=choice([32],[64,64],{a:1})")
    assert param.distribution == CategoricalDistribution(["[32]", "[64,64]", "{a:1}"])
    assert param.override("[64,64]") == "network.hidden=[64,64]"
    assert param.grid == ("[32]", "[64,64]", "{a:1}")


def test_sampled_values_become_overrides_hydra_reads_back_exactly():
    space = parse_search_space(
        ["lr=tag(log, interval(0.0003, 0.01))", "n=interval(1, 9)", "+opt=choice(adam, 'a b')", "b=choice(true, 1)"]
    )
    overrides = space.sampled({"lr": 0.0013922830138102383, "n": 4, "opt": "a b", "b": 1})
    assert overrides == ["lr=0.0013922830138102383", "n=4", "+opt=a\\ b", "b=1"]
    read_back = [o.value() for o in OverridesParser.create().parse_overrides(overrides)]
    assert read_back == [0.0013922830138102383, 4, "a b", 1] and type(read_back[3]) is int
    assert space.sampled({"lr": 1e-05}) == ["lr=1e-05"]
    assert list(space.params) == ["lr", "n", "opt", "b"]  # Optuna's names: without the +


def test_fixed_values_pass_through_and_a_later_override_of_a_key_wins():
    space = parse_search_space(
        [
            "train.batch_size=choice(32, 64)",  # from hydra.sweeper.params
            "network.dropout=interval(0, 0.5)",
            "network=mlp",  # the command line
            "train.batch_size=64",
            "~compare_with",
            "network.dropout=choice(0.1, 0.2)",
        ]
    )
    assert space.fixed == ("network=mlp", "train.batch_size=64", "~compare_with")
    assert space.distributions == {"network.dropout": CategoricalDistribution([0.1, 0.2])}


def test_the_grid_takes_choices_and_ranges():
    space = parse_search_space(["a=choice(x, y)", "n=range(1, 4)", "c=3"])
    assert space.grid() == {"a": ["x", "y"], "n": [1, 2, 3]}
    assert space.grid_size() == 6


def test_the_grid_refuses_intervals_naming_each():
    space = parse_search_space(["a=choice(x, y)", "lr=interval(0, 1)", "d=tag(log, interval(0.1, 1))"])
    with pytest.raises(ConfigError) as err:
        space.grid()
    assert [p.split(":")[0] for p in err.value.problems] == ["lr", "d"]
    assert "takes choice() and range() only" in err.value.problems[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=tag(foo, interval(0, 1))", "a: unknown tag 'foo'; the one tag allowed is tag(log, ...)"),
        ("a=tag(log, choice(1, 2))", "a: tag(log, ...) applies to interval() and range(), not to choice()"),
        ("a=tag(log, interval(0, 1))", "a: a log scale needs a lower end above 0, got 0"),
        ("a=tag(log, range(1, 10, 2))", "a: tag(log, range(a, b)) needs a step of 1 and a >= 1"),
        ("a=tag(log, range(0.1, 1, 0.1))", "a: tag(log, ...) over floats takes interval(a, b)"),
        ("a=interval(5, 1)", "a: interval(5, 1) has its lower end above its upper end"),
        ("a=range(3, 3)", "a: range(3, 3) holds no value"),
        ("network=glob(*)", "network: glob(*) is not a distribution a sampler can draw from; allowed: interval(a, b),"),
        ("a=choice(", "a: no viable alternative at input 'choice('"),
    ],
)
def test_a_bad_sweep_is_a_config_error_naming_the_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_search_space(["ok=interval(0, 1)", text])
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(message), err.value.problems[0]


def test_every_bad_sweep_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_search_space(["a=tag(foo, interval(0, 1))", "b=interval(2, 1)", "c=choice(1, 2)"])
    assert [p.split(":")[0] for p in err.value.problems] == ["a", "b"]
