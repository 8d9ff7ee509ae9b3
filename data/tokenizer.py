"""Text -> tokens -> ids, in core TensorFlow ops only.

`tokenize` is the one tokenizer: `data.prepare` uses it to store `text` records as tokens, and
`export/` puts the same function into the serving graph, so training and serving split text
identically. It uses only core string ops (no tensorflow-text, no py_function), which SavedModel
and TF Serving run as is (TFLite needs Flex for them).

Token ids: 0 is padding, 1..V are the vocabulary entries in file order, V+1..V+num_oov_buckets
are hash buckets for tokens outside the vocabulary.
"""

from __future__ import annotations

import collections
from typing import Sequence, Tuple, Union

import tensorflow as tf

# Punctuation and symbols become tokens of their own: "hi, you!" -> hi , you !
_PUNCTUATION = r"([[:punct:]]|\pP|\pS)"


def tokenize(text: tf.Tensor, lowercase: bool = True) -> tf.RaggedTensor:
    """Splits text into tokens on whitespace and punctuation.

    Args:
      text: tf.string [B], UTF-8.
      lowercase: lower-case (Unicode-aware) before splitting.

    Returns:
      tf.RaggedTensor, tf.string, [B, (tokens)]: each punctuation or symbol character is a token.
    """
    text = tf.convert_to_tensor(text, dtype=tf.string)
    if lowercase:
        text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, _PUNCTUATION, r" \1 ")
    return tf.strings.split(text)


class TokenLookup(tf.Module):
    """Maps string tokens to int32 ids: 0 padding, 1..V vocabulary, V+1..V+oov hash buckets.

    A `tf.Module`, so a model or serving module that holds it tracks its table; built from a
    vocabulary file, that file becomes a SavedModel asset.
    """

    def __init__(self, vocab: Union[str, tf.saved_model.Asset, Sequence[str]],
                 num_oov_buckets: int = 1, name=None):
        super().__init__(name=name)
        if num_oov_buckets < 1:
            raise ValueError(f"num_oov_buckets must be >= 1, got {num_oov_buckets}")
        if isinstance(vocab, (str, bytes, tf.saved_model.Asset, tf.Tensor)):
            initializer = tf.lookup.TextFileInitializer(
                vocab, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
        else:
            vocab = list(vocab)
            if len(set(vocab)) != len(vocab):
                raise ValueError("vocabulary has duplicate entries")
            if not vocab:
                raise ValueError("vocabulary is empty")
            initializer = tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab, tf.string), tf.range(len(vocab), dtype=tf.int64))
        self.num_oov_buckets = num_oov_buckets
        self.table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets)

    @property
    def vocab_size(self) -> int:
        """Rows an embedding needs: padding + vocabulary + OOV buckets."""
        return 1 + int(self.table.size())  # size() counts the OOV buckets too

    def __call__(self, tokens):
        """tokens: tf.string tensor or RaggedTensor of any shape -> int32 ids, same shape."""
        if isinstance(tokens, tf.RaggedTensor):
            return tf.ragged.map_flat_values(self._lookup, tokens)
        return self._lookup(tf.convert_to_tensor(tokens, tf.string))

    def _lookup(self, tokens: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.table.lookup(tokens) + 1, tf.int32)


def make_token_lookup(vocab: Union[str, tf.saved_model.Asset, Sequence[str]],
                      num_oov_buckets: int = 1) -> TokenLookup:
    """A `TokenLookup` from a vocabulary file (one token per line: a path, a
    `tf.saved_model.Asset` or a tf.string scalar) or from a sequence of tokens."""
    return TokenLookup(vocab, num_oov_buckets)


def build_vocab(counts: collections.Counter, min_count: int = 1,
                max_size: int = 0) -> Tuple[str, ...]:
    """Vocabulary from token counts: count >= min_count, most frequent first, ties by token.

    Args:
      counts: token -> occurrences in the training split.
      min_count: rarer tokens are left to the OOV buckets.
      max_size: keep at most this many (0: all).
    """
    kept = sorted(((-c, t) for t, c in counts.items() if c >= min_count))
    if max_size:
        kept = kept[:max_size]
    return tuple(t for _, t in kept)
