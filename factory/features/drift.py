"""Drift: how far new records moved from the training records of a model. No TensorFlow.

A training run keeps a summary of every feature of its training records (``statistics.json``,
key ``summary``: ``factory.features.scan.Column.summary`` of each feature, label and the weight).
``compare`` measures new records against it, feature by feature (``MEASURES``):

- numbers: ``mean_shift``, how far the mean moved, in training standard deviations; ``js``, the
  Jensen-Shannon distance (base 2, 0 to 1) between the training histogram and the shares of the
  new values (counted exactly) in its bins, plus open bins below and above it (training share 0);
- strings: ``linf``, the largest change of one value's share (the L-infinity distance), and
  ``oov``, the rise of the share of values outside the vocabulary (the spec's, or without one
  the training values when the summary lists them all);
- every feature: ``missing``, the change of the share of records without it, and (off unless
  set) ``max_missing``, a maximum for that share.

A measure crosses its threshold when its value exceeds the threshold *and* the level chance alone
reaches with these record counts (its ``chance``): the value a sample of this size exceeds with
probability ``CHANCE`` when nothing changed (the standard error of a difference of means or shares;
for ``js`` the chi-square approximation ``8 ln2 N JSD ~ chi2(bins - 1)``, ``N = nm / (n + m)``). With
many records the threshold decides, with few the chance level does, so an unshifted split of a small
dataset raises no alarm while the same thresholds hold on large data. Sizes count records holding
the feature, not values: the values of one record (a vector, an image) move together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.feature import Feature
    from factory.features.scan import Column
    from factory.features.spec import FeatureSpec


@dataclass(frozen=True)
class Measure:
    """One drift measure: its default threshold (None: off unless set), the kinds of feature it
    applies to (``number``, ``string``), whether its values lie in [0, 1], and what it means."""

    default: float | None
    kinds: tuple[str, ...]
    doc: str
    unit: bool = True


# The defaults flag a change of about the same size on every measure: a mean shift of 0.5 training
# std gives a Jensen-Shannon distance of 0.2 in 20 quantile bins, as does a 1.5 times wider spread.
MEASURES = {
    "mean_shift": Measure(0.5, ("number",), "distance of the mean from the training mean, in training std", False),
    "js": Measure(0.2, ("number",), "Jensen-Shannon distance of the values' shares in the training histogram's bins"),
    "linf": Measure(0.1, ("string",), "largest change of one value's share (L-infinity distance)"),
    "oov": Measure(0.05, ("string",), "rise of the share of values outside the vocabulary"),
    "missing": Measure(0.05, ("number", "string"), "change of the share of records missing the feature"),
    "max_missing": Measure(None, ("number", "string"), "share of records missing the feature: --max-missing-rate"),
}
# The probability that chance alone, with nothing changed, takes one measure past its chance level.
CHANCE = 0.001
_Z_TWO_SIDED = NormalDist().inv_cdf(1 - CHANCE / 2)
_Z_ONE_SIDED = NormalDist().inv_cdf(1 - CHANCE)


def kind(f: Feature) -> str:
    """``string`` or ``number`` (images: their decoded pixels)."""
    return "string" if f.dtype == "string" else "number"


# -- thresholds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """A threshold per measure (``MEASURES``' defaults unless set) and per feature; None: off."""

    defaults: Mapping[str, float | None] = field(default_factory=lambda: {k: m.default for k, m in MEASURES.items()})
    features: Mapping[tuple[str, str], float | None] = field(default_factory=dict)

    def of(self, feature: str, measure: str) -> float | None:
        return self.features.get((feature, measure), self.defaults[measure])

    @property
    def max_missing(self) -> bool:
        """Whether a maximum missing rate is set anywhere (checked without a training reference too)."""
        return self.defaults["max_missing"] is not None or any(
            m == "max_missing" and t is not None for (_, m), t in self.features.items()
        )


# -- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What new records hold of one feature: its ``summary`` (as ``Column.summary``) and, for a number,
    its ``values`` (or a uniform sample of them), for a string the ``counts`` of all its values."""

    summary: Mapping[str, Any]
    values: np.ndarray | None = None
    counts: Mapping[str, int] | None = None

    @classmethod
    def of(cls, column: Column) -> Observed:
        """From a ``factory.features.scan.Column`` gathered for a summary."""
        if column.sample is not None:
            return cls(column.summary(), values=column.sample.values()[:, 0])
        return cls(column.summary(), counts=column.text_counts())


@dataclass(frozen=True)
class Measurement:
    """One measure of one feature: its ``value``, ``threshold``, ``chance`` level and what moved (``text``)."""

    feature: str
    measure: str
    value: float
    threshold: float
    chance: float
    text: str

    @property
    def crossed(self) -> bool:
        return self.value > self.threshold and self.value > self.chance

    def line(self, records: int) -> str:
        """``drift: age: mean moved 1.8 training std, 0.01 -> 0.09 (threshold 0.5)``."""
        show = _pct if MEASURES[self.measure].unit and self.measure != "js" else _num
        bar = f"{'maximum' if self.measure == 'max_missing' else 'threshold'} {show(self.threshold)}"
        if self.chance > self.threshold:
            bar += f"; chance alone reaches {show(self.chance)} with {records} records"
        return f"{'missing' if self.measure == 'max_missing' else 'drift'}: {self.feature}: {self.text} ({bar})"

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "measure": self.measure,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "chance": _finite(self.chance),
            "crossed": self.crossed,
            "text": self.text,
        }


@dataclass(frozen=True)
class Comparison:
    """``measurements`` of every feature compared, and ``skipped``: ``{name: why it was not}``."""

    measurements: list[Measurement]
    skipped: dict[str, str]

    @property
    def crossed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.crossed]


def compare(
    spec: FeatureSpec, reference: Mapping[str, Mapping[str, Any]], new: Mapping[str, Observed], thresholds: Thresholds
) -> Comparison:
    """Measure each feature of ``spec`` (the model's, for its vocabularies) in ``new`` against its
    training summary in ``reference``. Labels and the weight count only when the new records hold them."""
    out: list[Measurement] = []
    skipped = {}
    for f in spec.all():
        ref, obs = reference.get(f.name), new.get(f.name)
        if ref is None or obs is None:
            skipped[f.name] = "no training summary" if ref is None else "not in the new records' spec"
        elif ref.get("dtype") != obs.summary.get("dtype"):
            skipped[f.name] = f"{ref.get('dtype')} in training, {obs.summary.get('dtype')} now"
        elif f.role != "feature" and obs.summary["missing"] == obs.summary["records"]:
            skipped[f.name] = f"a {f.role} the new records do not hold"
        else:
            out += _measure(f, ref, obs, thresholds)
    return Comparison(out, skipped)


def missing_rates(spec: FeatureSpec, new: Mapping[str, Observed], thresholds: Thresholds) -> list[Measurement]:
    """``max_missing`` alone, without a training reference."""
    return [m for f in spec.all() if f.name in new for m in _measure(f, None, new[f.name], thresholds)]


def _measure(f: Feature, ref: Mapping[str, Any] | None, obs: Observed, thresholds: Thresholds) -> list[Measurement]:
    out = []

    def add(measure: str, value: float, chance: float, text: str) -> None:
        threshold = thresholds.of(f.name, measure)
        if threshold is not None:
            out.append(Measurement(f.name, measure, value, threshold, chance, text))

    new = obs.summary
    rate = new["missing"] / new["records"] if new["records"] else 0.0
    if new["records"]:
        add("max_missing", rate, 0.0, f"missing in {_pct(rate)} of records")
    if ref is None or not ref["records"] or not new["records"]:
        return out
    before = ref["missing"] / ref["records"]
    chance = _share_chance(rate, new["records"], before, ref["records"])
    add("missing", abs(rate - before), chance, f"missing in {_pct(rate)} of records, {_pct(before)} in training")
    n, m = new["records"] - new["missing"], ref["records"] - ref["missing"]
    if not n or not m:
        return out
    if kind(f) == "number":
        add("mean_shift", *mean_shift(ref, new, n, m))
        if ref.get("histogram") and obs.values is not None:
            add("js", *_js(ref["histogram"], obs.values, n, m))
    else:
        threshold = thresholds.of(f.name, "linf")
        if threshold is not None:
            add("linf", *_linf(ref, obs, n, m, threshold))
        oov = _oov(f, ref, obs, n, m)
        if oov is not None:
            add("oov", *oov)
    return out


def mean_shift(ref: Mapping[str, Any], new: Mapping[str, Any], n: int, m: int) -> tuple[float, float, str]:
    """``(value, chance, text)``: |new mean - training mean| / training std; infinite when training
    values were all one value and the mean moved."""
    mu0, sd0, mu1, sd1 = ref["mean"], ref["std"], new["mean"], new["std"]
    text = f"mean moved from {_num(mu0)} to {_num(mu1)}"
    if sd0 == 0:
        return (0.0 if mu1 == mu0 else math.inf), 0.0, f"{text}; every training value was {_num(mu0)}"
    value = abs(mu1 - mu0) / sd0
    chance = _Z_TWO_SIDED * math.sqrt((sd1 / sd0) ** 2 / n + 1 / m)
    return value, chance, f"mean moved {_num(value)} training std, from {_num(mu0)} to {_num(mu1)}"


def bin_shares(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """The shares of ``values`` below ``edges[0]``, in each bin (``[e_i, e_i+1)``, the last one closed, as
    ``np.histogram`` counts) and above ``edges[-1]``: ``len(edges) + 1`` shares."""
    edges = np.asarray(edges, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64).ravel()
    bins = len(edges) - 1
    index = np.minimum(np.searchsorted(edges, x, side="right") - 1, bins - 1)
    index[x > edges[-1]] = bins
    counts = np.bincount(index + 1, minlength=bins + 2)
    return counts / max(int(counts.sum()), 1)


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """The Jensen-Shannon distance (the square root of the divergence, base 2: 0 to 1) of two distributions."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    mid = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        held = a > 0
        return float(np.sum(a[held] * np.log2(a[held] / mid[held])))

    return math.sqrt(min(max((kl(p) + kl(q)) / 2, 0.0), 1.0))


def js_chance(bins: int, n: int, m: int) -> float:
    """The Jensen-Shannon distance that two samples of ``n`` and ``m`` from one distribution exceed with
    probability ``CHANCE`` over ``bins`` non-empty bins (Wilson-Hilferty for the chi-square quantile)."""
    df = bins - 1
    if df < 1:
        return 0.0
    h = 2 / (9 * df)
    chi2 = df * (1 - h + _Z_ONE_SIDED * math.sqrt(h)) ** 3
    return min(1.0, math.sqrt(chi2 / (8 * math.log(2) * n * m / (n + m))))


def _js(histogram: Mapping[str, list], values: np.ndarray, n: int, m: int) -> tuple[float, float, str]:
    edges = histogram["edges"]
    p = np.array([0.0, *histogram["fractions"], 0.0])
    q = bin_shares(edges, values)
    value = js_distance(p, q)
    text = f"Jensen-Shannon distance {_num(value)} from the training histogram"
    if q[0] > 0:
        text += f"; {_pct(q[0])} of values below the training minimum {_num(edges[0])}"
    if q[-1] > 0:
        text += f"; {_pct(q[-1])} above the training maximum {_num(edges[-1])}"
    return value, js_chance(int(np.count_nonzero((p > 0) | (q > 0))), n, m), text


def _shares(summary: Mapping[str, Any], counts: Mapping[str, int] | None) -> tuple[dict[str, float], float]:
    """Each listed value's share, and the most an unlisted value can hold (0 when every value is listed)."""
    total = summary["values"]
    if counts is not None:
        return {v: c / total for v, c in counts.items()}, 0.0
    top = summary["top"]
    bound = 0.0 if summary["distinct"] <= len(top) else top[-1][1] / total
    return {v: c / total for v, c in top}, bound


def _linf(ref: Mapping[str, Any], obs: Observed, n: int, m: int, threshold: float) -> tuple[float, float, str]:
    """The value whose share moved furthest past both its chance level and ``threshold`` (the largest
    change, the L-infinity distance, when none crosses)."""
    before, before_bound = _shares(ref, None)
    now, now_bound = _shares(obs.summary, obs.counts)
    best = (-math.inf, 0.0, 0.0, "", 0.0, 0.0)
    for value in sorted(before.keys() | now.keys()):
        lo0, hi0 = (before[value],) * 2 if value in before else (0.0, before_bound)
        lo1, hi1 = (now[value],) * 2 if value in now else (0.0, now_bound)
        change = max(0.0, lo1 - hi0, lo0 - hi1)  # the least the share can have changed
        chance = _share_chance((lo1 + hi1) / 2, n, (lo0 + hi0) / 2, m)
        margin = change - max(threshold, chance)
        if (margin, change) > best[:2]:
            best = (margin, change, chance, value, (lo0 + hi0) / 2, (lo1 + hi1) / 2)
    _, change, chance, value, share0, share1 = best
    return change, chance, f"share of {value!r} moved from {_pct(share0)} to {_pct(share1)}"


def _oov(f: Feature, ref: Mapping[str, Any], obs: Observed, n: int, m: int) -> tuple[float, float, str] | None:
    before, before_bound = _shares(ref, None)
    now, _ = _shares(obs.summary, obs.counts)
    if f.vocabulary is not None:
        vocabulary = set(f.vocabulary)
        # An unlisted training value may be in the vocabulary: the training rate is at most this.
        rate0 = max(0.0, 1.0 - sum(s for v, s in before.items() if v in vocabulary))
        what = f"outside the vocabulary of {len(vocabulary)}"
        expected = f"{_pct(rate0)} in training"
    elif not before_bound:
        vocabulary = set(before)
        # Good-Turing: the share of new values never seen in training is about the share seen once.
        rate0 = sum(1 for v, c in ref["top"] if c == 1) / ref["values"]
        what = f"never seen in training ({len(vocabulary)} values)"
        expected = f"about {_pct(rate0)} expected"
    else:
        return None
    unseen = sorted(((s, v) for v, s in now.items() if v not in vocabulary), reverse=True)
    rate1 = sum(s for s, _ in unseen)
    text = f"{_pct(rate1)} of values {what}, {expected}"
    if unseen:
        text += f"; most frequent: {', '.join(repr(v) for _, v in unseen[:3])}"
    return rate1 - rate0, _share_chance(rate1, n, rate0, m), text


def _share_chance(p1: float, n: int, p0: float, m: int) -> float:
    """The change of a share (``p0`` of ``m``, ``p1`` of ``n``) that chance alone exceeds with probability ``CHANCE``."""
    pooled = (p1 * n + p0 * m) / (n + m)
    return _Z_TWO_SIDED * math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # strict JSON has no infinity


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "infinite"
