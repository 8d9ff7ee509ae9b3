"""Training throughput of `models.rnn.SequenceEncoder` against Keras 3 LSTM baselines.

Standard workload: 4096 sequences, 32 features, lengths uniform in [20, 200] padded to 200,
LSTM 128, 5 classes, batch 64, Adam, keep probability 0.75 on input, state and output
(Keras: dropout = recurrent_dropout = 0.25), seeded. Prints sequences/s after a warm-up epoch
and the ratios.

    python bench/rnn_throughput.py            # full run (a few minutes on 2 cores)
    python bench/rnn_throughput.py --quick    # 1024 sequences
    python bench/rnn_throughput.py --no-bucketing --no-jit   # ablations of our path
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.rnn import SequenceEncoder  # noqa: E402

FEATURES, MAX_LEN, MIN_LEN, UNITS, CLASSES, BATCH, KEEP = 32, 200, 20, 128, 5, 64, 0.75


def make_data(n, seed=0):
    """x float32 [n, 200, 32] (zeros past length), lengths int32 [n], labels int32 [n]."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, n).astype(np.int32)
    x = rng.normal(size=[n, MAX_LEN, FEATURES]).astype(np.float32)
    x *= (np.arange(MAX_LEN)[None, :] < lengths[:, None])[..., None]
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    return x, lengths, labels


def batches(x, lengths, labels, bucketing, rng, window=16, boundary=20):
    """One epoch of (x [64, T_b, 32], lengths, labels). Bucketing: shuffle, sort by length
    within windows of `window` batches, pad each batch only to its longest length rounded up
    to a multiple of `boundary` (few distinct shapes, so XLA compiles a few times only)."""
    order = rng.permutation(len(x))
    if bucketing:
        size = window * BATCH
        order = np.concatenate([
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in np.array_split(order, max(1, len(order) // size))])
    groups = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    rng.shuffle(groups)
    for idx in groups:
        t = MAX_LEN
        if bucketing:
            t = min(MAX_LEN, -(-int(lengths[idx].max()) // boundary) * boundary)
        yield x[idx, :t], lengths[idx], labels[idx]


def bench_ours(data, epochs, bucketing, jit):
    keras.utils.set_random_seed(0)
    encoder = SequenceEncoder("lstm", units=UNITS, input_keep_prob=KEEP, state_keep_prob=KEEP,
                              output_keep_prob=KEEP, seed=0)
    dense = keras.layers.Dense(CLASSES)
    optimizer = keras.optimizers.Adam()
    generator = tf.random.Generator.from_seed(0)
    encoder(data[0][:2], data[1][:2])
    dense(tf.zeros([1, UNITS]))
    variables = encoder.trainable_variables + dense.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit, reduce_retracing=False)
    def train_step(x, lengths, labels, seed):
        with tf.GradientTape() as tape:
            _, final = encoder(x, lengths, training=True, seed=seed,  # last-state pooling
                               return_sequences=False)
            logits = dense(final)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(0)
    # Compile every bucket shape before timing (an epoch may not meet them all).
    for t in (range(20, MAX_LEN + 1, 20) if bucketing else [MAX_LEN]):
        train_step(data[0][:BATCH, :t], np.minimum(data[1][:BATCH], t), data[2][:BATCH],
                   generator.make_seeds(1)[:, 0])

    def epoch():
        loss = None
        for xb, lb, yb in batches(*data, bucketing, rng):
            loss = train_step(xb, lb, yb, generator.make_seeds(1)[:, 0])
        return float(loss)

    return timed(epoch, len(data[0]), epochs)


def bench_keras(data, epochs, dropout):
    keras.utils.set_random_seed(0)
    rate = 1.0 - KEEP  # Keras takes a rate; ours a keep probability.
    model = keras.Sequential([
        keras.Input((MAX_LEN, FEATURES)),
        keras.layers.Masking(0.0),
        keras.layers.LSTM(UNITS, dropout=rate if dropout else 0.0,
                          recurrent_dropout=rate if dropout else 0.0),
        keras.layers.Dense(CLASSES)])
    model.compile(keras.optimizers.Adam(),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, _, labels = data

    def epoch():
        return model.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0,
                         shuffle=True).history["loss"][-1]

    return timed(epoch, len(x), epochs)


def timed(epoch, n, epochs):
    """Runs one warm-up epoch (tracing, XLA compiles), then `epochs` timed ones: seq/s."""
    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        loss = epoch()
    return n * epochs / (time.perf_counter() - start), loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024 sequences instead of 4096")
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs after warm-up")
    parser.add_argument("--no-bucketing", action="store_true")
    parser.add_argument("--no-jit", action="store_true")
    parser.add_argument("--skip-keras", action="store_true")
    args = parser.parse_args()
    n = args.sequences or (1024 if args.quick else 4096)
    data = make_data(n)
    rows = []
    bucketing, jit = not args.no_bucketing, not args.no_jit
    name = f"seqtrain LSTM, keep {KEEP} (bucketing={bucketing}, jit={jit})"
    rows.append((name,) + bench_ours(data, args.epochs, bucketing, jit))
    print(f"{rows[-1][0]:60s} {rows[-1][1]:8.1f} seq/s", flush=True)
    if not args.skip_keras:
        for label, dropout in [("Keras Masking+LSTM dropout=recurrent_dropout=0.25", True),
                               ("Keras Masking+LSTM no dropout", False)]:
            rows.append((label,) + bench_keras(data, args.epochs, dropout))
            print(f"{rows[-1][0]:60s} {rows[-1][1]:8.1f} seq/s", flush=True)
    print(f"\nworkload: {n} sequences, {FEATURES} features, lengths U[{MIN_LEN},{MAX_LEN}], "
          f"LSTM {UNITS}, batch {BATCH}, Adam; threads: {os.cpu_count()} cores visible")
    print(f"{'model':60s} {'seq/s':>8s} {'final loss':>10s}")
    for label, speed, loss in rows:
        print(f"{label:60s} {speed:8.1f} {loss:10.4f}")
    if len(rows) == 3:
        print(f"\nratio vs Keras with dropout:    {rows[0][1] / rows[1][1]:.2f}x (target >= 4)")
        print(f"ratio vs Keras without dropout: {rows[0][1] / rows[2][1]:.2f}x (target >= 1.5)")


if __name__ == "__main__":
    main()
