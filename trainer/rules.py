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
  * hashed n-gram bag (`ngram_orders`, `ngram_buckets`): for token inputs over a small
    alphabet (at most `MAX_ALPHABET` distinct tokens: nucleotides, amino acids, characters;
    and a sequence-level head), n-grams of orders 1..N beside the recurrence. N is the
    shortest order whose possible n-grams outnumber the median training sequence's steps
    `NGRAM_SPECIFICITY` times (alphabet ** N >= 100 x median length: a given N-gram then
    turns up by chance in about 1 in 100 sequences of that length, so it marks the ones it is
    in), within `MIN_NGRAM_ORDER`..`MAX_NGRAM_ORDER`: 8 for DNA's five letters at a median
    of 865 steps, 4 for amino acids at 400. The table gets the fewest power-of-2 rows that
    hold every possible n-gram of those orders, at most 2**16 (65,536 rows: on the DNA set's CV
    fold 0.889 against 0.881 with 2**18, at a quarter of the table, checkpoints and export; a
    user may set up to 2**18). Word vocabularies get none:
    the recurrence already reads every word's embedding, and on the text set the bag of
    words and word pairs changed nothing (train-split CV) at 1.6x the time.
  * pooling (`pooling`): "max" for token inputs over a word vocabulary (more than
    `MAX_ALPHABET` distinct tokens) with a sequence-level head, "mean" otherwise. A sentence's
    class is often carried by one or two words wherever they stand (what a bag of words
    reads); a maximum over steps keeps such a word's feature at full strength where a mean
    over the sentence dilutes it. Train-split CV on the text set: +0.005 and +0.001 (seeds 42
    and 43 on fold 0 of 2: 0.9073 -> 0.9123, 0.9075 -> 0.9082) and +0.003 on a fold of 4.
    Dense series and small alphabets keep the mean (a motif's evidence adds up along a DNA
    sequence or a spectrum).
  * embedding width (`embedding_dim`) and label smoothing (`label_smoothing`), for the same
    word vocabularies: a `WORD_EMBEDDING_DIM`-wide embedding (64 otherwise) and smoothing
    `WORD_LABEL_SMOOTHING` (0 otherwise). Thousands of words, most seen a handful of times,
    want more room than an alphabet of 5, and a word seen in one class only would otherwise
    drive its logits without bound (Mueller et al. 2019: smoothing also calibrates).
    Train-split CV on the text set, fold 0 of 2, seeds 42 / 43: 0.9123 / 0.9082 with 64 and
    no smoothing; 128: 0.9147 / 0.9122 (256: 0.9128 / 0.9106); smoothing 0.1: 0.9132 / 0.9126;
    both: 0.9150 / 0.9166 (+0.0055 on the mean). Small alphabets keep 64 and no smoothing
    (the values their CV chose the other rules with).
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
# The hashed n-gram bag for token inputs over small alphabets (not words).
MAX_ALPHABET = 32
NGRAM_SPECIFICITY = 100
MIN_NGRAM_ORDER, MAX_NGRAM_ORDER = 3, 10
MAX_NGRAM_BUCKETS = 2 ** 16
# Token embedding width: word vocabularies get twice the width of small alphabets, and word
# vocabularies train with smoothed labels.
EMBEDDING_DIM, WORD_EMBEDDING_DIM = 64, 128
WORD_LABEL_SMOOTHING = 0.1


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


def ngram_orders_for(alphabet: int, median: int) -> int:
    """The n-gram bag's longest order for `alphabet` distinct tokens at this median length:
    the shortest N with alphabet ** N >= NGRAM_SPECIFICITY * median, clamped to
    MIN_NGRAM_ORDER..MAX_NGRAM_ORDER; 0 (no bag) above MAX_ALPHABET tokens (words)."""
    if alphabet > MAX_ALPHABET:
        return 0
    letters = max(alphabet, 2)
    order = math.ceil(math.log(NGRAM_SPECIFICITY * max(median, 1)) / math.log(letters) - 1e-9)
    return min(max(order, MIN_NGRAM_ORDER), MAX_NGRAM_ORDER)


def ngram_buckets_for(alphabet: int, orders: int) -> int:
    """Rows for every possible n-gram of orders 1..`orders`: the next power of 2, at most
    MAX_NGRAM_BUCKETS."""
    possible = sum(max(alphabet, 2) ** n for n in range(1, orders + 1))
    return min(2 ** max(1, math.ceil(math.log2(possible))), MAX_NGRAM_BUCKETS)


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
    alphabet = len(getattr(spec, "vocab", ()) or ())
    words = model.uses_tokens and alphabet > MAX_ALPHABET and model.resolved_head != "tagging"
    if model.pooling == "auto":
        model = dataclasses.replace(model, pooling="max" if words else "mean")
        notes.append(f"pooling: max over steps ({alphabet} distinct tokens > {MAX_ALPHABET}: words, "
                     f"where one word can carry the class)" if words else
                     "pooling: mean over real steps (dense input, a small alphabet or a tagging head)")
    if model.embedding_dim == -1:
        width = WORD_EMBEDDING_DIM if words else EMBEDDING_DIM
        model = dataclasses.replace(model, embedding_dim=width)
        if model.uses_tokens:
            notes.append(f"embedding: {width} wide ({alphabet} distinct tokens" + (
                f" > {MAX_ALPHABET}: words)" if words else ": a small alphabet, or a tagging head)"))
    if model.label_smoothing == -1:
        smoothing = WORD_LABEL_SMOOTHING if words else 0.0
        model = dataclasses.replace(model, label_smoothing=smoothing)
        notes.append(f"label smoothing: {smoothing} (" + (
            f"{alphabet} distinct tokens > {MAX_ALPHABET}: words, where a rare word can push the "
            "logits to extremes)" if words else "dense input, a small alphabet or a tagging head)"))
    if model.ngram_orders == -1:
        orders = 0
        if model.uses_tokens and model.resolved_head != "tagging":
            orders = ngram_orders_for(alphabet, median)
        model = dataclasses.replace(model, ngram_orders=orders)
        if orders:
            notes.append(f"n-gram bag: orders 1..{orders} ({alphabet} distinct tokens: {alphabet} ** "
                         f"{orders} >= {NGRAM_SPECIFICITY} x median training length {median})")
        else:
            notes.append(f"n-gram bag: none (dense input, a tagging head, or {alphabet} distinct "
                         f"tokens > {MAX_ALPHABET}: words)")
    if model.ngram_buckets == -1 and model.uses_ngram_bag:
        buckets = ngram_buckets_for(alphabet, model.ngram_orders)
        model = dataclasses.replace(model, ngram_buckets=buckets)
        notes.append(f"n-gram table: {buckets} rows of {model.ngram_dim} (every n-gram of orders "
                     f"1..{model.ngram_orders} over {alphabet} tokens, at most {MAX_NGRAM_BUCKETS})")
    return dataclasses.replace(config, model=model), notes
