"""Cost against real tokens: the trainer's loop at median lengths 50, 500 and 5,000 and batch
sizes 16, 64 and 256 (issue 13's length sweep).

Each cell is the path `python -m trainer.task` takes, on token sequences of the GeneFamilies
kind (a vocabulary of 64 tokens, lengths uniform in [median/2, 3 median/2], 4 classes): a JSON
Lines file -> `data.prepare.prepare_data` -> `data.pipeline.make_dataset(training=True)` (length
bucketing) -> `models.build_model` (embedding 32, LSTM 128, last-step pooling, keep 0.75 on
input, state and output) -> the trainer's `TrainLoop` with XLA, in the trainer's chunks
(`rnn_throughput.time_epochs`). One warm-up epoch (it compiles every batch shape), then one
timed epoch. A cell holds about `--tokens` real tokens (at least 3 batches). Each cell takes the
strategy the CLI would for its batch (`trainer.distribution.make_strategy`: on 2 cores, 2 CPU
replicas from batch 64 on, none at batch 16), printed as "replicas".

Printed per cell: real tokens/s, padding share, the time lengths XLA compiled (each batch's
padded by `trainer.steps.compiled_length`), and the ratio of its
real tokens/s to the first cell's (median 50, batch 64). Cost linear in real tokens means ratios
near 1 or above (longer sequences amortise the per-step overhead); a ratio well below 1 at long
lengths means padding, shapes or memory cost more than the tokens. A cell that does not fit in
memory (backpropagation through time keeps every step's activations: batch x length x the
cell's width) says so and the grid goes on.

    python bench/length_sweep.py                    # the full grid (several minutes on 2 cores)
    python bench/length_sweep.py --medians 50,500 --batches 16,64 --tokens 50000   # smaller
"""

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data.config import DataConfig  # noqa: E402
from data.pipeline import make_dataset  # noqa: E402
from data.prepare import prepare_data  # noqa: E402
from models import build_model  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from trainer import distribution  # noqa: E402
from trainer.config import Config, TrainConfig  # noqa: E402
from trainer.optimization import make_optimizer  # noqa: E402
from trainer.steps import TrainLoop, compiled_length  # noqa: E402
from trainer.train import with_data_spec  # noqa: E402

VOCAB, CLASSES, UNITS, EMBEDDING, KEEP, SEED = 64, 4, 128, 32, 0.75, 0
MEDIANS, BATCHES = (50, 500, 5000), (64, 16, 256)  # the first cell (50, 64) is the reference


def _throughput_bench():
    spec = importlib.util.spec_from_file_location(
        "rnn_throughput", os.path.join(REPO_ROOT, "bench", "rnn_throughput.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tokens(path, n, median, seed=SEED):
    """n records {"tokens": [...], "label": "c<k>"}, lengths uniform in [median/2, 3 median/2]."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, median // 2), median * 3 // 2 + 1, n)
    with open(path, "w") as f:
        for length in lengths:
            tokens = rng.integers(0, VOCAB, int(length))
            f.write(json.dumps({"tokens": [f"t{t}" for t in tokens],
                                "label": f"c{int(tokens[0]) % CLASSES}"}) + "\n")
    return int(lengths.sum())


def bench_cell(median, batch, tokens, workdir, time_epochs):
    """One cell: dict of real tokens/s, padding share, compiled shapes, sequences, seconds."""
    n = max(3, -(-tokens // (median * batch))) * batch  # whole batches: an epoch reads n sequences
    train_file = os.path.join(workdir, f"train-{median}-{batch}.jsonl")
    written = write_tokens(train_file, n, median)
    # The strategy the CLI would take for this batch (auto CPU replicas), made before the first
    # cell's TensorFlow work; later cells reuse its logical devices.
    strategy, worker = distribution.make_strategy(cpu_replicas=0, batch_size=batch)
    data_config = DataConfig(train_data=train_file, eval_fraction=0.0, batch_size=batch)
    train_config = TrainConfig(model_dir=os.path.join(workdir, f"run-{median}-{batch}"), seed=SEED,
                               jit_compile="on")
    prepared = prepare_data(data_config, train_config.model_dir, train_config.seed)
    model_config = ModelConfig(
        cell="lstm", hidden_units=UNITS, num_layers=1, bidirectional=False, pooling="last",
        embedding_dim=EMBEDDING, input_keep_prob=KEEP, state_keep_prob=KEEP, output_keep_prob=KEEP,
        variational_recurrent=True, mask_per_example=False, update_keep_prob=1.0,
        label_smoothing=0.0, class_weighting="none", conv_layers=0, conv_stride=1,
        sequence_norm="off", random_features=0, ngram_orders=0)
    model_config = with_data_spec(Config(model=model_config), prepared.spec).model
    steps_per_epoch = max(1, -(-prepared.splits["train"].num_records // batch))
    keras.utils.set_random_seed(SEED)
    with strategy.scope():
        model = build_model(model_config)
        optimizer = make_optimizer(train_config, 2 * steps_per_epoch)
        optimizer.build(model.trainable_variables)
    dataset = make_dataset(prepared.splits["train"].files, prepared.spec, data_config, training=True,
                           seed=SEED)
    loop = TrainLoop(
        model, optimizer, model_config.resolved_head, strategy=strategy, iterators=[iter(dataset)],
        rng=tf.random.Generator.from_seed(SEED), step=tf.Variable(0, dtype=tf.int64),
        clip_norm=train_config.clip_norm, label_smoothing=0.0, class_weights=None,
        element_spec=dataset.element_spec, grad_accum_steps=1, jit_compile=True,
        batch_split=worker.cpu_replicas)
    periods = (train_config.log_step_count_steps, steps_per_epoch)
    started = time.perf_counter()
    time_epochs(loop, steps_per_epoch, periods, 1)  # warm-up: every shape compiles here
    warmup = time.perf_counter() - started
    sequences, real_tokens, padding, seconds, _, _ = time_epochs(loop, steps_per_epoch, periods, 1)
    # The time lengths XLA compiles for: each batch's padded to `compiled_length`, as the loop does.
    shapes = sorted({int(compiled_length(tf.constant(int(b["token_ids"].shape[1]))))
                     for b in dataset.take(2 * steps_per_epoch)})
    return {"median": median, "batch": batch, "records": n, "written_tokens": written,
            "sequences": sequences, "tokens": real_tokens,
            "seconds": seconds, "warmup_seconds": warmup, "tokens_per_second": real_tokens / seconds,
            "padding_share": padding, "shapes": shapes, "cpu_replicas": worker.cpu_replicas}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--medians", default=",".join(map(str, MEDIANS)))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--tokens", type=int, default=300_000, help="real tokens per cell (about)")
    parser.add_argument("--json-out", default="", help="also write the cells as JSON here")
    args = parser.parse_args(argv)
    medians = [int(v) for v in args.medians.split(",")]
    batch_sizes = [int(v) for v in args.batches.split(",")]
    time_epochs = _throughput_bench().time_epochs
    wall = time.perf_counter()
    cells = []
    with tempfile.TemporaryDirectory(prefix="length_sweep_") as workdir:
        for median in medians:
            for batch in batch_sizes:
                try:
                    cell = bench_cell(median, batch, args.tokens, workdir, time_epochs)
                except tf.errors.ResourceExhaustedError as error:  # BPTT keeps every step's activations
                    needed = re.search(r"allocate ([0-9.]+\s*[GMK]iB)", str(error))
                    print(f"median {median:5d} batch {batch:4d}: out of memory"
                          + (f" (one allocation of {needed.group(1)})" if needed else ""), flush=True)
                    cells.append({"median": median, "batch": batch, "out_of_memory": True,
                                  "allocation": needed.group(1) if needed else ""})
                    continue
                cells.append(cell)
                print(f"median {median:5d} batch {batch:4d}: {cell['tokens_per_second']:9.0f} real tokens/s, "
                      f"padding {cell['padding_share']:.3f}, {len(cell['shapes'])} shapes "
                      f"{cell['shapes'][:3]}{'...' if len(cell['shapes']) > 3 else ''}, warm-up "
                      f"{cell['warmup_seconds']:.1f} s", flush=True)
    reference = cells[0]["tokens_per_second"]
    print(f"\n{'median':>6s} {'batch':>5s} {'real tok/s':>10s} {'ratio':>6s} {'padding':>7s} {'shapes':>6s} "
          f"{'replicas':>8s}")
    for cell in cells:
        if cell.get("out_of_memory"):
            print(f"{cell['median']:6d} {cell['batch']:5d} {'out of memory':>10s} {cell['allocation']}")
            continue
        cell["ratio"] = cell["tokens_per_second"] / reference
        print(f"{cell['median']:6d} {cell['batch']:5d} {cell['tokens_per_second']:10.0f} "
              f"{cell['ratio']:6.2f} {cell['padding_share']:7.3f} {len(cell['shapes']):6d} "
              f"{cell['cpu_replicas']:8d}")
    print(f"ratio: real tokens/s against median {cells[0]['median']}, batch {cells[0]['batch']} "
          f"(LSTM {UNITS}, embedding {EMBEDDING}, XLA, {os.cpu_count()} cores visible)")
    print(f"total wall time {time.perf_counter() - wall:.0f} s")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(cells, f, indent=1)
    return cells


if __name__ == "__main__":
    main()
