"""Feature-spec rules beyond the JSON Schema, and building ``Feature`` objects from validated dicts.

``FeatureSpec.from_dict`` validates against ``schemas/feature_spec.schema.json``
first; what a schema cannot express well (an encoding needs uint8 images, a
default must fit the shape, a label's task needs what it needs...) is checked
here, every problem with its dotted path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from factory.features.checks import (
    VocabularyCheck,
    flatten,
    nested_shape,
    number_problem,
    shape_problem,
    string_problem,
)
from factory.features.feature import (
    AUTO,
    IMAGE_CHANNELS,
    Augment,
    AutoVocabulary,
    Cross,
    Feature,
    Missing,
    Normalize,
    Preprocess,
    Text,
    cross_name,
    indicator_name,
    shape_str,
)
from factory.validation import did_you_mean


def _value_problem(dtype: str, value: Any, position: tuple[int, ...] = ()) -> str | None:
    """A default or pad value checked as a record's value would be (see ``checks``)."""
    problem = string_problem(value, position) if dtype == "string" else number_problem(value, dtype, position)
    return None if problem is None else str(problem)


def _positions(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every position in a value of ``shape``, row-major (the order of ``flatten``)."""
    return list(np.ndindex(*shape))


def semantic_problems(spec: dict) -> list[str]:
    """Rules that JSON Schema cannot express well, each with its dotted path."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    groups = [("features", spec["features"]), ("labels", spec.get("labels") or {})]
    for group, entries in groups:
        for name, f in entries.items():
            path = f"{group}.{name}"
            if name in seen:
                problems.append(f"{path}: the name '{name}' is already used in {seen[name]}")
            seen[name] = path
            problems += _feature_problems(path, f, label=group == "labels")
    if spec.get("weight"):
        name = spec["weight"]["name"]
        if name in seen:
            problems.append(f"weight.name: the name '{name}' is already used in {seen[name]}")
        seen[name] = "weight.name"
    for name, f in spec["features"].items():
        missing = _missing(f)
        if missing and missing.get("indicator"):
            flag = indicator_name(name)
            if flag in seen:
                problems.append(
                    f"features.{name}.missing.indicator: the indicator input '{flag}' clashes with {seen[flag]}; "
                    "rename that feature, or set `indicator: false`"
                )
    for i, cross in enumerate(spec.get("crosses") or []):
        path, name = f"crosses[{i}]", cross.get("name") or cross_name(cross["features"])
        for member in cross["features"]:
            f = spec["features"].get(member)
            if f is None:
                known = list(spec["features"])
                p = f"{path}.features: '{member}' is not a feature{did_you_mean(member, known)}; features: {', '.join(known)}"
                problems.append(p)
            elif all(key not in f for key in ("vocabulary", "hash_buckets", "bins")) or f["shape"] != []:
                problems.append(
                    f"{path}.features: '{member}' is not a categorical scalar; a cross combines the ids of features "
                    "with a `vocabulary`, `hash_buckets` or `bins` and shape []"
                )
        if name in seen:
            problems.append(f"{path}.name: the name '{name}' is already used in {seen[name]}; give the cross a `name`")
        seen[name] = path
        if "embedding_dim" in cross and cross.get("encode") != "embedding":
            problems.append(f"{path}.embedding_dim: only with `encode: embedding`")
    sources: dict[str, str] = {}
    for group, entries in groups:
        for name, f in entries.items():
            source, path = f.get("column", name), f"{group}.{name}"
            if source in sources:
                key = f"{path}.column" if "column" in f else path
                problems.append(
                    f"{key}: reads the column '{source}', which {sources[source]} reads already; "
                    "each column feeds one feature"
                )
            sources[source] = path
    return problems


def _categorical_problems(path: str, f: dict) -> list[str]:
    """``hash_buckets``, ``encode`` and ``embedding_dim``: categorical features only, each its own way."""
    p: list[str] = []
    dtype, vocab, buckets = f["dtype"], f.get("vocabulary"), f.get("hash_buckets")
    if buckets is not None:
        if dtype not in ("string", "int64") or f.get("encoding"):
            p.append(f"{path}.hash_buckets: hashes strings or int64 ids, not {dtype}; drop it")
        if vocab is not None:
            p.append(
                f"{path}.hash_buckets: a feature has a vocabulary or hash buckets, not both; with a vocabulary, "
                "`oov_buckets` hashes the values outside it"
            )
        if f.get("preprocess"):
            p.append(f"{path}.preprocess: a hashed feature holds ids, not numbers to scale; drop `preprocess`")
    bins = f.get("bins")
    if bins is not None:
        if dtype not in ("float32", "int64") or f.get("encoding"):
            p.append(f"{path}.bins: bucketizes numbers (float32 or int64), not {dtype}; drop it")
        if isinstance(bins, list) and any(b >= a for a, b in zip(bins[1:], bins, strict=False)):
            p.append(f"{path}.bins: the boundaries must be strictly increasing, got {bins}")
        if f.get("preprocess"):
            p.append(f"{path}.preprocess: a bucketized feature holds bin ids, not numbers to scale; drop `preprocess`")
        if buckets is not None:
            p.append(f"{path}.bins: a feature is hashed or bucketized, not both; drop one")
    categorical = vocab is not None or buckets is not None or bins is not None
    for key in ("encode", "embedding_dim"):
        if key in f and not categorical:
            p.append(
                f"{path}.{key}: applies to categorical features (a `vocabulary`, `hash_buckets` or `bins`), "
                f"not to a {dtype} {'number' if dtype != 'string' else 'string without either'}"
            )
    if "embedding_dim" in f and f.get("encode") in ("one_hot", "multi_hot"):
        p.append(f"{path}.embedding_dim: `encode: {f['encode']}` has no embedding; drop one of them")
    if f.get("encode") == "multi_hot" and len(f["shape"]) != 1:
        p.append(
            f"{path}.encode: multi_hot encodes a list of categories (shape [null] or [k]), got shape "
            f"{shape_str(f['shape'])}; use one_hot"
        )
    if f.get("encode") == "embedding" and f["shape"][:1] == [None] and len(f["shape"]) != 1:
        p.append(
            f"{path}.encode: the embedding of a variable-length list needs shape [null], got {shape_str(f['shape'])}"
        )
    return p


def _text_problems(path: str, f: dict) -> list[str]:
    """``text``: a string scalar that is nothing else (no vocabulary, hashing or fill), each sub-key in its place."""
    p: list[str] = []
    text = f["text"]
    if f["dtype"] != "string" or f["shape"] != []:
        p.append(
            f"{path}.text: free text is a string of shape [], got {f['dtype']} {shape_str(f['shape'])}; drop `text`"
        )
    for key in ("vocabulary", "hash_buckets", "encode", "embedding_dim", "missing"):
        if key in f:
            why = "an empty text" if key == "missing" else "tokens with a vocabulary of their own"
            p.append(f"{path}.{key}: a `text` feature becomes {why}; drop `{key}`")
    sequence = text.get("output", "multi_hot") == "sequence"
    for key in ("max_length", "embedding_dim"):
        if key in text and not sequence:
            p.append(f"{path}.text.{key}: only with `output: sequence`")
    if "idf" in text:
        if "vocabulary" not in text or text.get("output") != "tf_idf":
            p.append(f"{path}.text.idf: only with `output: tf_idf` and a given `vocabulary`")
        elif len(text["idf"]) != len(text["vocabulary"]):
            p.append(
                f"{path}.text.idf: {len(text['idf'])} weights for {len(text['vocabulary'])} tokens; give one per token"
            )
    elif "vocabulary" in text and text.get("output") == "tf_idf":
        p.append(
            f"{path}.text.idf: `output: tf_idf` with a given `vocabulary` needs its IDF weights; "
            "leave out `vocabulary` to learn both from the training records"
        )
    return p


def build_text(text: dict) -> Text:
    max_tokens = text.get("max_tokens", AUTO)
    return Text(
        split=text.get("split", "whitespace"),
        lowercase=text.get("lowercase", True),
        strip_punctuation=text.get("strip_punctuation", True),
        ngrams=text.get("ngrams", 1),
        max_tokens=None if max_tokens == AUTO else max_tokens,
        min_count=text.get("min_count", 2),
        output=text.get("output", "multi_hot"),
        max_length=text.get("max_length"),
        embedding_dim=text.get("embedding_dim"),
        vocabulary=tuple(text["vocabulary"]) if "vocabulary" in text else None,
        idf=tuple(float(w) for w in text["idf"]) if "idf" in text else None,
    )


def _missing(f: dict) -> dict | None:
    """A feature's ``missing`` as a dict (``missing: median`` is short for ``{fill: median}``), or None."""
    missing = f.get("missing")
    return {"fill": missing} if isinstance(missing, str) else missing


def _missing_problems(path: str, f: dict) -> list[str]:
    missing = _missing(f)
    if missing is None:
        return []
    p: list[str] = []
    dtype, shape = f["dtype"], f["shape"]
    fill, where = missing["fill"], f"{path}.missing"
    if "default" in f:
        p.append(
            f"{path}.default: `missing` and `default` both say what a missing value becomes; drop `default` "
            "(`missing: {fill: constant, value: ...}` fills a constant without writing it into the records)"
        )
    if f.get("encoding") or dtype == "uint8":
        return [*p, f"{where}: applies to float32, int64 and string features, not {dtype} images or pixels"]
    if shape and shape[0] is None:
        return [*p, f"{where}: a variable-length feature is empty when it is missing; drop `missing`"]
    if dtype == "string" and fill in ("mean", "median"):
        p.append(f"{where}.fill: {fill} needs numbers; a string feature takes `most_frequent` or `constant`")
    if fill == "constant" and "value" not in missing:
        p.append(f"{where}.value: `fill: constant` needs the `value` to fill in")
    if "value" in missing:
        values = missing["value"] if isinstance(missing["value"], list) else [missing["value"]]
        channels = shape[-1] if shape else 1
        if len(values) not in (1, channels):
            p.append(
                f"{where}.value: {len(values)} values, but the last dimension has size {channels}; "
                "give one value or one per channel"
            )
        bad = next((m for v in values if (m := _value_problem(dtype, v))), None)
        vocab = f.get("vocabulary")
        if bad is None and dtype == "string" and isinstance(vocab, list) and f.get("oov_buckets", 0) == 0:
            check = VocabularyCheck(vocab)
            bad = next((str(m) for v in values if (m := check.problem(v))), None)
        if bad:
            p.append(f"{where}.value: {bad}")
    return p


def _feature_problems(path: str, f: dict, label: bool) -> list[str]:
    p: list[str] = []
    dtype, shape = f["dtype"], f["shape"]
    variable = bool(shape) and shape[0] is None
    if any(d is None for d in shape[1:]):
        p.append(f"{path}.shape: only the first dimension may be null (variable length), got {shape_str(shape)}")
    if not variable:
        for key in ("ragged", "max_length", "pad_value"):
            if key in f:
                p.append(f"{path}.{key}: only applies to variable-length features (a null first dimension in `shape`)")
    elif f.get("ragged") and "max_length" in f:
        p.append(f"{path}.max_length: a ragged feature is not padded; drop `max_length` or set `ragged: false`")

    enc = f.get("encoding")
    if enc:
        if dtype != "uint8":
            p.append(f"{path}.encoding: {enc} images decode to uint8; set `dtype: uint8` (got {dtype})")
        if len(shape) != 3 or None in shape:
            p.append(
                f"{path}.shape: an encoded image needs a fixed [height, width, channels] shape, got {shape_str(shape)}"
            )
        elif shape[2] not in IMAGE_CHANNELS[enc]:
            allowed = ", ".join(map(str, IMAGE_CHANNELS[enc]))
            p.append(f"{path}.shape: {enc} images have {allowed} channels, got {shape[2]}")
        if "default" in f:
            p.append(f"{path}.default: an encoded image cannot have a default; make the records carry it")

    vocab = f.get("vocabulary")
    if vocab is not None and dtype != "string":
        p.append(f"{path}.vocabulary: a vocabulary maps strings to ids; set `dtype: string` (got {dtype})")
    if "oov_buckets" in f and vocab is None:
        p.append(f"{path}.oov_buckets: needs a `vocabulary`")
    for key in ("max_tokens", "min_count"):
        if key in f and vocab != AUTO:
            p.append(
                f"{path}.{key}: only applies to `vocabulary: auto` (a vocabulary computed from the training records)"
            )

    p += _categorical_problems(path, f)
    if "text" in f:
        p += _text_problems(path, f)

    if "pad_value" in f and variable:
        problem = _value_problem(dtype, f["pad_value"])
        if problem:
            p.append(f"{path}.pad_value: {problem}")

    if "default" in f and not enc:
        default = f["default"]
        got = nested_shape(default)
        shape_wrong = got != () and shape_problem(shape, got, f"shape {shape_str(shape)} or a scalar")
        if variable:
            p.append(f"{path}.default: a variable-length feature defaults to empty; drop `default`")
        elif got is None:
            p.append(f"{path}.default: nested lists of unequal length")
        elif shape_wrong:
            p.append(f"{path}.default: {shape_wrong}")
        else:
            values = list(zip(flatten(default), _positions(got), strict=True))
            bad = next((m for v, at in values if (m := _value_problem(dtype, v, at))), None)
            if bad is None and vocab is not None and vocab != AUTO and f.get("oov_buckets", 0) == 0:
                vocabulary = VocabularyCheck(vocab)
                bad = next((str(m) for v, at in values if (m := vocabulary.problem(v, at))), None)
            if bad:
                p.append(f"{path}.default: {bad}")

    pre = f.get("preprocess")
    if pre:
        if dtype == "string":
            p.append(f"{path}.preprocess: applies to numeric features; a string feature needs a `vocabulary` instead")
        norm = pre.get("normalize")
        if norm and norm != AUTO:
            channels = shape[-1] if shape and shape[-1] is not None else None
            for key in ("mean", "std"):
                values = norm[key] if isinstance(norm[key], list) else [norm[key]]
                if len(values) != 1 and (not shape or len(values) != channels):
                    p.append(
                        f"{path}.preprocess.normalize.{key}: {len(values)} values, but the last dimension has size {channels or 'none'}; give one value or one per channel"
                    )
            stds = norm["std"] if isinstance(norm["std"], list) else [norm["std"]]
            if any(s <= 0 for s in stds):
                p.append(f"{path}.preprocess.normalize.std: must be positive, got {norm['std']!r}")

    aug = f.get("augment")
    if aug:
        if dtype != "uint8" or len(shape) != 3 or None in shape:
            p.append(
                f"{path}.augment: augmentation applies to images (uint8 with a fixed [height, width, channels] shape), got {dtype} {shape_str(shape)}"
            )
        elif aug.get("crop") and (aug["crop"][0] > shape[0] or aug["crop"][1] > shape[1]):
            p.append(f"{path}.augment.crop: {aug['crop']} is larger than the image ({shape[0]}x{shape[1]})")

    if label:
        p += _label_problems(path, f)
    else:
        p += _missing_problems(path, f)
    return p


def _label_problems(path: str, f: dict) -> list[str]:
    p: list[str] = []
    task = _task(f)
    dtype = f["dtype"]
    norm = f.get("normalize")
    if norm is not None and task != "regression":
        p.append(f"{path}.normalize: only a regression label is normalized (this one is {task})")
    elif isinstance(norm, dict):
        size = math.prod(d for d in f["shape"] if d) if f["shape"] else 1
        for key in ("mean", "std"):
            values = norm[key] if isinstance(norm[key], list) else [norm[key]]
            if len(values) not in (1, size):
                p.append(
                    f"{path}.normalize.{key}: {len(values)} values for a label of size {size}; give one value or {size}"
                )
        stds = norm["std"] if isinstance(norm["std"], list) else [norm["std"]]
        if any(v <= 0 for v in stds):
            p.append(f"{path}.normalize.std: must be positive, got {norm['std']!r}")
    if task == "classification":
        if "num_classes" not in f and "vocabulary" not in f:
            p.append(f"{path}.num_classes: a classification label needs `num_classes` (or a string `vocabulary`)")
        if dtype not in ("int64", "string", "uint8"):
            p.append(f"{path}.dtype: class ids are integers; use int64 (or string with a vocabulary), got {dtype}")
        if dtype == "string" and "vocabulary" not in f:
            p.append(f"{path}.vocabulary: a string label needs a `vocabulary` that maps it to class ids")
        vocab = f.get("vocabulary")
        if vocab is not None and "num_classes" in f and f["num_classes"] != len(vocab):
            p.append(
                f"{path}.num_classes: {f['num_classes']} does not match the vocabulary's {len(vocab)} entries; drop `num_classes`"
            )
    elif task == "binary":
        if dtype not in ("int64", "float32", "uint8"):
            p.append(f"{path}.dtype: a binary label is 0/1 as int64 or float32, got {dtype}")
    else:
        if dtype == "string" or "vocabulary" in f:
            p.append(f"{path}.dtype: a regression label is numeric, got {dtype}")
        if "num_classes" in f:
            p.append(f"{path}.num_classes: only for `task: classification`")
    if f["shape"] and f["shape"][0] is None:
        p.append(f"{path}.shape: a label needs a fixed shape, got {shape_str(f['shape'])}")
    return p


def _task(f: dict) -> str:
    if "task" in f:
        return f["task"]
    return "classification" if ("num_classes" in f or "vocabulary" in f) else "regression"


def build_feature(name: str, f: dict, role: str) -> Feature:
    shape = tuple(f["shape"])
    default = None
    if "default" in f:
        flat = flatten(f["default"])
        size = math.prod(shape) if shape else 1
        default = tuple(flat * size if len(flat) == 1 and size > 1 else flat)
    elif "text" in f:  # a record without the text holds an empty one
        default = ("",)
    pre = f.get("preprocess")
    if role == "label" and "normalize" in f:  # a label's normalize rescales the network's output
        pre = {"normalize": f["normalize"]}
    preprocess = None
    if pre:
        norm = pre.get("normalize")
        normalize = None
        if norm == AUTO:
            normalize = Normalize()
        elif norm:
            as_tuple = lambda v: tuple(float(x) for x in (v if isinstance(v, list) else [v]))  # noqa: E731
            normalize = Normalize(mean=as_tuple(norm["mean"]), std=as_tuple(norm["std"]))
        preprocess = Preprocess(scale=pre.get("scale"), normalize=normalize)
    aug = f.get("augment")
    augment = None
    if aug:
        augment = Augment(
            flip=aug.get("flip", "none"),
            translate=aug.get("translate", 0),
            crop=tuple(aug["crop"]) if aug.get("crop") else None,
            brightness=float(aug.get("brightness", 0.0)),
            contrast=float(aug.get("contrast", 0.0)),
        )
    auto_vocabulary = None
    if f.get("vocabulary") == AUTO:
        auto_vocabulary = AutoVocabulary(max_tokens=f.get("max_tokens"), min_count=f.get("min_count", 1))
    vocab = tuple(f["vocabulary"]) if f.get("vocabulary") not in (None, AUTO) else None
    task = num_classes = None
    if role == "label":
        task = _task(f)
        if task == "classification":
            num_classes = f.get("num_classes") or len(vocab)
    missing = None
    if (m := _missing(f)) is not None:
        value = m.get("value")
        value = tuple(value if isinstance(value, list) else [value]) if value is not None else None
        missing = Missing(fill=m["fill"], value=value, indicator=bool(m.get("indicator", False)))
    pad_value = f.get("pad_value")
    if shape and shape[0] is None and pad_value is None:
        pad_value = "" if f["dtype"] == "string" else 0
    return Feature(
        name=name,
        dtype=f["dtype"],
        shape=shape,
        role=role,
        default=default,
        encoding=f.get("encoding"),
        vocabulary=vocab,
        oov_buckets=f.get("oov_buckets", 0),
        ragged=f.get("ragged", False),
        max_length=f.get("max_length"),
        pad_value=pad_value,
        preprocess=preprocess,
        augment=augment if augment and augment.active else None,
        task=task,
        num_classes=num_classes,
        auto_vocabulary=auto_vocabulary,
        missing=missing,
        column=f.get("column"),
        hash_buckets=f.get("hash_buckets"),
        bins=tuple(float(b) for b in f["bins"]) if isinstance(f.get("bins"), list) else None,
        auto_bins=f["bins"]["auto"] if isinstance(f.get("bins"), dict) else None,
        encode=f.get("encode"),
        embedding_dim=f.get("embedding_dim"),
        text=build_text(f["text"]) if "text" in f else None,
    )


def build_cross(cross: dict) -> Cross:
    return Cross(
        name=cross.get("name") or cross_name(cross["features"]),
        features=tuple(cross["features"]),
        hash_buckets=cross["hash_buckets"],
        encode=cross.get("encode"),
        embedding_dim=cross.get("embedding_dim"),
    )
