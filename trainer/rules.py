"""Defaults decided from the data: what `auto` (or -1) means for the fields that take it.

The trainer calls `resolve(config, spec)` once the data spec is known (after preparation) and
before the model is built; the resolved values are what `config.json` records, so a resume, a
re-export and batch prediction build the same model. Each decision is returned as one
sentence for the log. The rules read only the training split's statistics (`DataSpec`:
number of sequences, length quantiles, feature width, token vs dense input); they were
checked by cross-validation on the training splits of the development suite
(`bench/real_data_results.md`), never on a test split.

Rules (a user overrides any of them by giving the field a value):
  * conv front end (`conv_layers`, `conv_stride`): when the median training length is above
    `FRONTEND_MIN_LENGTH`, strided convolutions shorten every sequence so the recurrence reads
    about `RECURRENCE_TARGET_STEPS` steps at the median (at least half that) (total stride a power of 2, at most 4
    per layer, at least 2 layers). Short sequences (speech frames, sentences) and tagging
    heads get none.
  * random-convolution features (`random_features`): for dense inputs whose median training
    length is above `FRONTEND_MIN_LENGTH` (and a sequence-level head), about
    `AUTO_RANDOM_FEATURES` MiniROCKET-style features beside the recurrence; none otherwise.
  * hashed n-gram bag (`ngram_orders`): for token inputs over a small alphabet (and a
    sequence-level head), n-grams of orders 1..N beside the recurrence, N the longest order
    whose every n-gram of the vocabulary (padding aside) still fits the table's rows without
    sharing one, at most `MAX_NGRAM_ORDER`: 6 (6-mers) for DNA's five letters, 3 for amino
    acids. Word vocabularies, where fewer than `MIN_NGRAM_ORDER` orders fit, get none: the
    recurrence already reads every word's embedding, and on the text set the bag of words and
    word pairs changed nothing (train-split CV) at 1.6x the time.
  Per-sequence z-normalisation (`sequence_norm`) is no rule: it is off unless asked for. On
    the suite it was a no-op on the z-normalised sets and took away what identifies PigCVP's
    classes (per-sequence level and scale).
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Tuple

from trainer.config import Config

# Median training length above which a convolutional front end shortens sequences.
FRONTEND_MIN_LENGTH = 128
# Steps the recurrence should read at the median length, after the front end.
RECURRENCE_TARGET_STEPS = 150
FRONTEND_MIN_LAYERS = 2
# Random-convolution features for long dense series (84 kernels x dilations x biases).
AUTO_RANDOM_FEATURES = 4000
# Orders of the hashed n-gram bag for token inputs: none below the minimum (word vocabularies).
MIN_NGRAM_ORDER, MAX_NGRAM_ORDER = 3, 6


def median_length(spec) -> int:
    """Median training sequence length (from the spec's length quantiles; 1 if unknown)."""
    quantiles = tuple(spec.length_quantiles)
    return int(quantiles[len(quantiles) // 2]) if quantiles else max(spec.max_length, 1)


def frontend_for(median: int) -> Tuple[int, int]:
    """(conv_layers, conv_stride) for sequences of this median length; (0, 1) for none."""
    if median <= FRONTEND_MIN_LENGTH:
        return 0, 1
    stride = 2 ** max(1, math.ceil(math.log2(median / RECURRENCE_TARGET_STEPS)))
    layers = max(FRONTEND_MIN_LAYERS, math.ceil(math.log(stride, 4) - 1e-9))
    return layers, stride


def ngram_orders_for(vocab_size: int, buckets: int) -> int:
    """The longest n-gram order whose (vocab_size - 1) ** n n-grams fit in `buckets` rows, at
    most MAX_NGRAM_ORDER; 0 (no bag) when that is below MIN_NGRAM_ORDER."""
    alphabet = max(vocab_size - 1, 2)
    order = min(int(math.floor(math.log(buckets) / math.log(alphabet) + 1e-9)), MAX_NGRAM_ORDER)
    return order if order >= MIN_NGRAM_ORDER else 0


def resolve(config: Config, spec) -> Tuple[Config, List[str]]:
    """The config with every data-decided model field fixed, and one log sentence per decision."""
    model, notes = config.model, []
    median = median_length(spec)
    if model.conv_layers == -1 or model.conv_stride == -1:
        layers, stride = frontend_for(median)
        if model.resolved_head == "tagging":
            layers, stride = 0, 1
        if model.conv_layers != -1:
            layers = model.conv_layers
        if model.conv_stride != -1:
            stride = model.conv_stride
        elif layers and not frontend_for(median)[0]:
            stride = 1  # a front end the user asked for on short sequences keeps every step
        model = dataclasses.replace(model, conv_layers=layers, conv_stride=stride)
        if layers:
            notes.append(f"conv front end: {layers} layers, total stride {stride} (median training "
                         f"length {median}: the recurrence reads about {math.ceil(median / stride)} "
                         f"steps)")
        else:
            notes.append(f"conv front end: none (median training length {median} <= "
                         f"{FRONTEND_MIN_LENGTH}, or a tagging head)")
    if model.random_features == -1:
        count = (AUTO_RANDOM_FEATURES if median > FRONTEND_MIN_LENGTH and not model.uses_tokens
                 and model.resolved_head != "tagging" else 0)
        model = dataclasses.replace(model, random_features=count)
        notes.append(f"random-convolution features: about {count} (median training length {median})"
                     if count else "random-convolution features: none (token input, a tagging "
                     f"head, or median training length {median} <= {FRONTEND_MIN_LENGTH})")
    if model.ngram_orders == -1:
        orders = 0
        if model.uses_tokens and model.resolved_head != "tagging":
            orders = ngram_orders_for(spec.vocab_size, model.ngram_buckets)
        model = dataclasses.replace(model, ngram_orders=orders)
        notes.append(f"n-gram bag: orders 1..{orders} hashed into {model.ngram_buckets} rows (vocabulary "
                     f"of {spec.vocab_size} ids)" if orders else
                     f"n-gram bag: none (dense input, a tagging head, or a vocabulary of "
                     f"{spec.vocab_size} ids, where fewer than {MIN_NGRAM_ORDER} orders fit)")
    return dataclasses.replace(config, model=model), notes
