"""Free text (``text:``) in the graph: tokens, their counts for the statistics pass, and the model input.

One tokenizer (``tokens``) serves the statistics pass (``batch_counts``, which ``scan`` runs in
its ``tf.data`` pipeline) and the preprocessing that training, evaluation and both serving
signatures share (``encode``), so a token is the same token everywhere. The vocabulary and the
IDF weights it learns live in the spec (``Feature.text``, written by ``TextVocabulary`` in
``factory.features.statistics``) and from there in the export's lookup table and constants.

Ids of a token, as the model sees them:

- ``multi_hot`` / ``tf_idf``: a float32 vector of ``len(vocabulary) + 1``; position 0 stands for
  every token outside the vocabulary, position ``i + 1`` for ``vocabulary[i]``. ``tf_idf`` is the
  count of the token in the text times its IDF weight, ``log(1 + documents / (1 + df))`` (Keras'
  ``TextVectorization`` formula; the weight of position 0 is the mean weight).
- ``sequence``: int64 ids in text order, 0 for padding, 1 for a token outside the vocabulary and
  ``i + 2`` for ``vocabulary[i]``; padded or cut to ``max_length`` (without it: to the longest text
  of the batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.feature import Text

# Keras' TextVectorization default: ASCII punctuation, removed before splitting.
PUNCTUATION = r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']'
# The id of padding and of a token outside the vocabulary in a ``sequence``.
PAD, OOV = 0, 1


def tokens(text: Text, x: tf.Tensor) -> tf.RaggedTensor:
    """The tokens (and n-grams) of each string of ``x`` ``[batch]``: ragged ``[batch, None]`` of strings."""
    if text.lowercase:
        x = tf.strings.lower(x, encoding="utf-8")
    if text.strip_punctuation:
        x = tf.strings.regex_replace(x, PUNCTUATION, "")
    if text.split == "characters":
        parts = tf.strings.unicode_split(x, "UTF-8", errors="replace")
        separator = ""
    else:
        parts = tf.strings.split(x)
        separator = " "
    if text.ngrams > 1:
        parts = tf.strings.ngrams(parts, ngram_width=list(range(1, text.ngrams + 1)), separator=separator)
    return parts


def batch_counts(text: Text, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One batch of the statistics pass: ``(token, count, documents)`` of each distinct token of ``x``:
    how often it occurs, and in how many strings of the batch."""
    parts = tokens(text, x)
    flat = parts.flat_values
    unique, index, counts = tf.unique_with_counts(flat, out_idx=tf.int64)
    size = tf.size(unique, out_type=tf.int64)
    # A (string, token) pair once per string: the documents a token occurs in.
    pairs, _ = tf.unique(parts.value_rowids() * size + index)
    documents = tf.math.bincount(pairs % tf.maximum(size, 1), minlength=size, maxlength=size, dtype=tf.int64)
    return unique, counts, documents


def table(text: Text) -> tf.lookup.StaticHashTable:
    """The vocabulary's lookup: ``vocabulary[i]`` -> ``i + 2``, any other token -> ``OOV``."""
    keys = tf.constant(text.vocabulary, tf.string)
    values = tf.range(2, len(text.vocabulary) + 2, dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=OOV)


def encode(text: Text, lookup: tf.lookup.StaticHashTable, x: tf.Tensor) -> tf.Tensor:
    """The model input of the strings ``x`` ``[batch]`` (see the module docstring)."""
    ids = tf.ragged.map_flat_values(lookup.lookup, tokens(text, x))
    if text.output == "sequence":
        if text.max_length is None:
            return ids.to_tensor(default_value=PAD)
        return ids.to_tensor(default_value=PAD, shape=[None, text.max_length])
    width = len(text.vocabulary) + 1
    positions = tf.ragged.map_flat_values(lambda v: v - 1, ids)  # OOV -> 0, vocabulary[i] -> i + 1
    binary = text.output == "multi_hot"
    counts = tf.math.bincount(
        positions, minlength=width, maxlength=width, binary_output=binary, dtype=tf.float32, axis=-1
    )
    counts = tf.ensure_shape(counts, [None, width])
    return counts if binary else counts * tf.constant(idf_weights(text), tf.float32)


def idf_weights(text: Text) -> list[float]:
    """The IDF weight of each position of a ``tf_idf`` vector: position 0 (outside the vocabulary)
    gets the mean of the others."""
    weights = list(text.idf)
    return [sum(weights) / len(weights), *weights]
