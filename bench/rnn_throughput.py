"""Training throughput of the seqtrain product path against Keras 3 LSTM baselines.

Standard workload: 4096 sequences, 32 features, lengths uniform in [20, 200] padded to 200,
LSTM 128, 5 classes, batch 64, Adam, keep probability 0.75 on input, state and output
(Keras: dropout = recurrent_dropout = 0.25), seeded.

The "seqtrain" row is the path `python -m trainer.task` runs: the workload is written as a
JSON Lines file, prepared by `data.prepare.prepare_data` (validated, TFRecord shards, spec),
read by `data.pipeline.make_dataset(training=True)` (shuffle, cache, length bucketing), and
trained by `models.build_model` + `trainer.optimization.make_optimizer` + the trainer's compiled
`trainer.steps.TrainLoop`, in chunks that end where the trainer's would (every
`log_step_count_steps` and at epoch ends). Checkpoint saves, evaluation and the progress bar
are not timed. Sequences and seconds come from the loop's own stats. Every row that is timed
by epochs (the loop and the peers) runs a warm-up epoch, then `--epochs` epochs each timed on its
own, and its rate is its fastest epoch's: the Keras dropout row alternated between about 200 and
360 seq/s from one epoch to the next on this 2-core machine (one process, nothing else running),
so a mean of two epochs moved 2x between runs. All epoch rates are printed. On a machine without a
GPU and with more than one core it runs as the CLI would (`trainer.distribution.make_strategy`,
auto CPU replicas that split each batch). The Keras peers train on the same arrays, padded to
200, each in a process of its own (`bench_keras_process`).

The "CLI" row is `python -m trainer.task` itself on the same file and the same pinned model,
timed from outside as a marginal rate: two runs of CLI_STEPS optimizer steps, (sequences of the
longer - of the shorter) / (wall seconds of the longer - of the shorter), so start-up,
preparation, compiles and the final test evaluation cancel and what remains is training with
everything the CLI does between chunks (a checkpoint and summaries at every epoch, progress).
It also prints the size of one checkpoint against the model and optimizer variables it holds.

The "inference" lines take the export of a one-step CLI run of the same model (SavedModel +
TFLite, both verified as a user's export is) and time `serving_default` in each runtime, batch 1 (one
sequence at its own length) and batch 64 (padded to the longest of the 64): median of
INFERENCE_RUNS calls after warm-up, each runtime with its default threads.

    python bench/rnn_throughput.py            # full run (a few minutes on 2 cores)
    python bench/rnn_throughput.py --quick    # 1024 sequences
    python bench/rnn_throughput.py --no-bucketing --no-jit   # ablations of the product path
    python bench/rnn_throughput.py --hand-step # also the old hand-written encoder step

With torch installed (the `bench-torch` extra) a PyTorch `nn.LSTM` row over padded batches
(`bench/torch_peer.py`, its own process) is timed too, and the CLI's ratio to it printed.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # the hand step retraces per bucket shape on purpose

from data.config import DataConfig  # noqa: E402
from data.pipeline import bucket_boundaries, make_dataset  # noqa: E402
from data.prepare import prepare_data  # noqa: E402
from models import build_model  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.rnn import SequenceEncoder  # noqa: E402
from trainer.config import Config, TrainConfig  # noqa: E402
from trainer.optimization import make_optimizer  # noqa: E402
from trainer.steps import XLA_TIME_MULTIPLE, TrainLoop, compiled_lengths  # noqa: E402
from trainer import distribution, rules  # noqa: E402
from trainer.schedule import next_stop, training_steps, use_xla  # noqa: E402
from trainer.train import with_data_spec  # noqa: E402

FEATURES, MAX_LEN, MIN_LEN, UNITS, CLASSES, BATCH, KEEP = 32, 200, 20, 128, 5, 64, 0.75
SEED = 0


def make_data(n, seed=SEED):
    """x float32 [n, 200, 32] (zeros past length), lengths int32 [n], labels int32 [n].

    Values are rounded to 4 decimals so the JSON Lines file holds exactly these numbers."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, n).astype(np.int32)
    x = np.round(rng.normal(size=[n, MAX_LEN, FEATURES]), 4).astype(np.float32)
    x *= (np.arange(MAX_LEN)[None, :] < lengths[:, None])[..., None]
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    return x, lengths, labels


def write_jsonl(path, data):
    """One record a line: {"features": [[32 floats] x length], "label": int} (data/README.md)."""
    x, lengths, labels = data
    with open(path, "w") as f:
        for i in range(len(x)):
            steps = np.round(x[i, :lengths[i]].astype(np.float64), 4).tolist()
            f.write(json.dumps({"features": steps, "label": int(labels[i])}) + "\n")


# ---------------------------------------------------------------------------------------------
# The product path.

def time_epochs(loop, steps_per_epoch, periods, count):
    """Trains `count` epochs with a `TrainLoop` in trainer-sized chunks (ending where
    `periods` say, as the trainer's do): (sequences, real tokens, padded share, seconds, mean
    loss, chunks), from the loop's own stats."""
    current = int(loop.step)
    end = current + count * steps_per_epoch
    sequences = tokens = 0
    seconds = loss_sum = 0.0
    padded_tokens = 0.0
    chunks = 0
    while current < end:
        size = next_stop(current, end, periods) - current
        start = time.perf_counter()
        loop(size)
        stats = loop.stats.read_and_reset()  # the chunk's one host sync, as in the trainer
        seconds += time.perf_counter() - start
        sequences += stats["sequences"]
        tokens += stats["tokens"]
        padded_tokens += stats["tokens"] / max(1.0 - stats["padding_share"], 1e-12)
        loss_sum += stats["loss"] * stats["steps"]
        current += size
        chunks += 1
    return (sequences, tokens, 1.0 - tokens / max(padded_tokens, 1.0), seconds,
            loss_sum / (count * steps_per_epoch), chunks)


def bench_product(data, epochs, bucketing, jit, workdir, precision=""):
    """seq/s of the trainer's own loop on the prepared workload, after one warm-up epoch.

    Returns (seq/s, mean loss of the timed epochs, details dict)."""
    # The strategy a `python -m trainer.task` run on this machine takes (CPU replicas that split
    # each batch, on a machine with more than one core), made before TensorFlow's first op.
    strategy, worker = distribution.make_strategy(batch_size=BATCH, cpu_replicas=0)
    train_file = os.path.join(workdir, "train.jsonl")
    write_jsonl(train_file, data)  # the user's file: not part of preparation
    input_mb = os.path.getsize(train_file) / 2**20
    started = time.perf_counter()
    data_config = DataConfig(train_data=train_file, eval_fraction=0.0, batch_size=BATCH,
                             bucketing=bucketing)
    train_config = TrainConfig(model_dir=os.path.join(workdir, "run"), seed=SEED,
                               jit_compile="on" if jit else "off")
    prepared = prepare_data(data_config, train_config.model_dir, train_config.seed)
    prepare_seconds = time.perf_counter() - started
    spec = prepared.spec
    # Every architecture field is pinned: the workload fixes the model, whatever the
    # package's defaults are (TF1 DropoutWrapper: variational masks shared by the batch).
    model_config = ModelConfig(
        cell="lstm", hidden_units=UNITS, num_layers=1, bidirectional=False, pooling="last",
        head="auto", input_keep_prob=KEEP, state_keep_prob=KEEP, output_keep_prob=KEEP,
        variational_recurrent=True, mask_per_example=False, update_keep_prob=1.0,
        label_smoothing=0.0, class_weighting="none", conv_layers=0, conv_stride=1,
        sequence_norm="off")
    model_config = with_data_spec(Config(model=model_config), spec).model  # as the trainer does

    num_train = prepared.splits["train"].num_records
    steps_per_epoch = max(1, -(-num_train // BATCH))
    # What a default `python -m trainer.task` run on this data would train: it sets the
    # optimizer schedule, and `jit_compile=auto` decides from it.
    total_steps = training_steps(train_config, num_train, steps_per_epoch)
    auto_jit = use_xla("auto", total_steps * BATCH * rules.median_length(spec),
                       len(compiled_lengths(spec.length_quantiles[0], spec.length_quantiles[-1])))
    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        model = build_model(model_config, precision or "float32")
        optimizer = make_optimizer(train_config, total_steps)
        optimizer.build(model.trainable_variables)
    dataset = make_dataset(prepared.splits["train"].files, spec, data_config, training=True,
                           seed=train_config.seed)
    iterators = [iter(dataset)]
    loop = TrainLoop(
        model, optimizer, model_config.resolved_head, strategy=strategy, iterators=iterators,
        rng=tf.random.Generator.from_seed(train_config.seed),
        step=tf.Variable(0, dtype=tf.int64, name="global_step"),
        clip_norm=train_config.clip_norm, label_smoothing=model_config.label_smoothing,
        class_weights=None, element_spec=dataset.element_spec,
        grad_accum_steps=train_config.grad_accum_steps, jit_compile=jit,
        batch_split=worker.cpu_replicas)
    periods = (train_config.log_step_count_steps, steps_per_epoch)

    warm = time_epochs(loop, steps_per_epoch, periods, 1)
    meter = CpuMeter()
    each = [time_epochs(loop, steps_per_epoch, periods, 1) for _ in range(epochs)]  # timed one by one
    other_cpu = meter.others()
    rates = [epoch[0] / epoch[3] for epoch in each]
    sequences, tokens, seconds, chunks = (sum(epoch[i] for epoch in each) for i in (0, 1, 3, 5))
    padding = 1.0 - tokens / sum(epoch[1] / max(1.0 - epoch[2], 1e-12) for epoch in each)
    loss = sum(epoch[4] for epoch in each) / len(each)
    details = {
        "prepare_seconds": prepare_seconds, "prepare_input_mb": input_mb, "warmup_seconds": warm[3],
        "steps": epochs * steps_per_epoch, "chunks": chunks, "tokens_per_second": tokens / seconds,
        "epoch_rates": rates,
        "padding_share": padding, "auto_jit": auto_jit, "total_steps": total_steps,
        "model": (f"{model_config.cell} {model_config.hidden_units} x{model_config.num_layers}, "
                  f"bidirectional={model_config.bidirectional}, pooling={model_config.pooling}, "
                  f"head={model_config.resolved_head}, keep {model_config.input_keep_prob}/"
                  f"{model_config.state_keep_prob}/{model_config.output_keep_prob}, "
                  f"mask_per_example={model_config.mask_per_example}, "
                  f"{train_config.optimizer} clip_norm={train_config.clip_norm}, "
                  f"{worker.cpu_replicas} CPU replica(s) splitting each batch"),
        "boundaries": bucket_boundaries(spec, data_config.num_buckets) if bucketing else (),
        "shapes": _batch_shapes(prepared, spec, data_config, train_config.seed, steps_per_epoch,
                                epochs, jit),
    }
    return max(rates), loss, other_cpu, details


# Optimizer steps of the two timed CLI runs (their difference is the marginal rate's).
CLI_STEPS = (160, 480)


def cli_flags(jit, bucketing, precision=""):
    """`python -m trainer.task` flags for the pinned workload model (as bench_product's)."""
    return (["--mixed-precision", precision] if precision else []) + ["--cell", "lstm", "--hidden-units", str(UNITS), "--num-layers", "1", "--no-bidirectional",
            "--pooling", "last", "--input-keep-prob", str(KEEP), "--state-keep-prob", str(KEEP),
            "--output-keep-prob", str(KEEP), "--variational-recurrent", "--no-mask-per-example",
            "--update-keep-prob", "1.0", "--label-smoothing", "0", "--class-weighting", "none",
            "--conv-layers", "0", "--conv-stride", "1", "--sequence-norm", "off",
            "--random-features", "0", "--batch-size", str(BATCH), "--eval-fraction", "0",
            "--bucketing" if bucketing else "--no-bucketing", "--jit-compile", "on" if jit else "off",
            "--seed", str(SEED), "--export-formats", "", "--verbosity", "warning"]


def checkpoint_sizes(model_dir):
    """(bytes of the newest checkpoint in <model_dir>/checkpoints, bytes of the float variables
    it holds: model, optimizer slots, RNG and counters at their dtypes' sizes)."""
    folder = os.path.join(model_dir, "checkpoints")
    newest = tf.train.latest_checkpoint(folder)
    if not newest:
        return 0, 0
    prefix = os.path.basename(newest)
    size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
               if name.startswith(prefix + "."))
    reader = tf.train.load_checkpoint(newest)
    dtypes = reader.get_variable_to_dtype_map()
    held = sum(int(np.prod(shape)) * dtypes[name].size
               for name, shape in reader.get_variable_to_shape_map().items()
               if dtypes[name] != tf.string)
    return size, held


def _run_in_repo(command):
    """subprocess.run of `command` from the repository root, with the repository importable."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def run_cli(train_file, test_file, model_dir, steps, flags):
    """Runs `python -m trainer.task` on the workload from the repository root; wall seconds.
    Raises RuntimeError with the end of its stderr when it fails."""
    command = [sys.executable, "-m", "trainer.task", "--train-data", train_file,
               "--test-data", test_file, "--model-dir", model_dir, "--max-steps", str(steps), *flags]
    start = time.perf_counter()
    result = _run_in_repo(command)
    if result.returncode:
        raise RuntimeError(f"CLI run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def warm_up_imports():
    """Imports trainer.task once in a child process, so that the first timed run does not also
    pay for reading TensorFlow's files from disk (it made a 2-step run slower than a 6-step one)."""
    _run_in_repo([sys.executable, "-c", "import trainer.task"])


def bench_cli(train_file, test_file, jit, bucketing, workdir, cli_steps=CLI_STEPS, precision=""):
    """Marginal seq/s of `python -m trainer.task` between runs of `cli_steps` steps.

    Returns (seq/s, other processes' cores while timed, details dict)."""
    seconds, model_dir = {}, ""
    warm_up_imports()
    meter = CpuMeter()
    for steps in cli_steps:
        model_dir = os.path.join(workdir, f"cli_{steps}")
        seconds[steps] = run_cli(train_file, test_file, model_dir, steps, cli_flags(jit, bucketing, precision))
    other_cpu = meter.others()
    short, long = cli_steps
    if seconds[long] <= seconds[short]:
        raise RuntimeError(f"CLI runs of {short} and {long} steps took {seconds[short]:.1f} s and "
                           f"{seconds[long]:.1f} s: too few steps apart to time")
    speed = (long - short) * BATCH / (seconds[long] - seconds[short])
    checkpoint_bytes, variable_bytes = checkpoint_sizes(model_dir)
    saves = len([name for name in os.listdir(os.path.join(model_dir, "checkpoints"))
                 if name.endswith(".index")])
    return speed, other_cpu, {"steps": cli_steps, "seconds": seconds, "checkpoint_bytes": checkpoint_bytes,
                              "variable_bytes": variable_bytes, "checkpoints_kept": saves}


INFERENCE_RUNS = 50


def _median_ms(call, inputs, runs=INFERENCE_RUNS):
    for _ in range(5):
        call(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def bench_inference(train_file, test_file, data, jit, bucketing, workdir, precision=""):
    """{(runtime, batch): median ms} for `serving_default` of a CLI export of the pinned model:
    runtime "saved_model" (tf.saved_model.load) or "tflite" (ai_edge_litert), batch 1 or 64.

    The export comes from a one-step `python -m trainer.task` run with the default formats
    (the same graph as a trained model's, verified as every export is)."""
    from ai_edge_litert.interpreter import Interpreter

    model_dir = os.path.join(workdir, "cli_export")
    flags = cli_flags(jit, bucketing, precision)
    flags[flags.index("--export-formats") + 1] = "saved_model,tflite"
    run_cli(train_file, test_file, model_dir, 1, flags)
    export_root = os.path.join(model_dir, "export")
    version = os.path.join(export_root, max(os.listdir(export_root)))
    exported = {"saved_model": version, "tflite": os.path.join(version, "tflite", "model.tflite")}
    x, lengths, _ = data
    cases = {}
    for batch in (1, 64):
        longest = int(lengths[:batch].max())
        cases[batch] = {"features": x[:batch, :longest].astype(np.float32),
                        "lengths": lengths[:batch].astype(np.int32)}
    serving = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    timings = {}
    for batch, inputs in cases.items():
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        timings[("saved_model", batch)] = _median_ms(lambda t: serving(**t), tensors)
        runner = Interpreter(model_path=exported["tflite"]).get_signature_runner("serving_default")
        timings[("tflite", batch)] = _median_ms(lambda t: runner(**t), inputs)
    return timings


def _batch_shapes(prepared, spec, data_config, seed, steps_per_epoch, epochs, jit):
    """The [batch, time] shapes the gradient function meets in the warm-up and timed epochs,
    read from a second, identical pipeline (deterministic order). Under XLA time is padded to a
    multiple of 8 first, as TrainLoop does; each new shape is an XLA compile."""
    dataset = make_dataset(prepared.splits["train"].files, spec, data_config, training=True,
                           seed=seed)
    warm, timed = set(), set()
    for i, batch in enumerate(dataset.take((1 + epochs) * steps_per_epoch)):
        b, t = batch["lengths"].shape[0], int(batch["features"].shape[1])
        if jit:
            t = -(-t // XLA_TIME_MULTIPLE) * XLA_TIME_MULTIPLE
        (warm if i < steps_per_epoch else timed).add((b, t))
    return {"warmup": sorted(warm), "timed_new": sorted(timed - warm)}


# ---------------------------------------------------------------------------------------------
# The old hand-written encoder step (`--hand-step`): the encoder alone, own bucketing.

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


def bench_hand_step(data, epochs, bucketing, jit):
    keras.utils.set_random_seed(SEED)
    encoder = SequenceEncoder("lstm", units=UNITS, input_keep_prob=KEEP, state_keep_prob=KEEP,
                              output_keep_prob=KEEP, seed=SEED)
    dense = keras.layers.Dense(CLASSES)
    optimizer = keras.optimizers.Adam()
    generator = tf.random.Generator.from_seed(SEED)
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

    rng = np.random.default_rng(SEED)
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


# ---------------------------------------------------------------------------------------------
# Keras peers.

def bench_keras(data, epochs, dropout):
    keras.utils.set_random_seed(SEED)
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


def _peer_process(name, command_for, data):
    """(seq/s, loss, others CPU, epoch rates) of a peer row run in a process of its own on the
    workload saved as an .npz file; `command_for(path)` is its command line, whose last stdout
    line is the row as JSON."""
    with tempfile.TemporaryDirectory(prefix="peer_") as scratch:
        path = os.path.join(scratch, "data.npz")
        np.savez(path, x=data[0], lengths=data[1], labels=data[2])
        meter = CpuMeter()
        result = _run_in_repo(command_for(path))
        other_cpu = meter.others()
    if result.returncode:
        raise RuntimeError(f"{name} failed: {result.stderr[-2000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    return row["sequences_per_second"], row["loss"], other_cpu, row["epoch_rates"]


def bench_keras_process(data, epochs, dropout):
    """`bench_keras` in a process of its own, as the PyTorch row's (see `_peer_process`).

    In the process that had just run the trainer rows (their pipelines and compiled functions
    still held) the Keras dropout row measured 322-337 seq/s, against 393-399 in a fresh one.
    """
    return _peer_process("the Keras peer process", lambda path: [
        sys.executable, os.path.abspath(__file__), "--keras-peer", "dropout" if dropout else "plain",
        "--peer-data", path, "--epochs", str(epochs)], data)


def _keras_peer_main(kind, path, epochs):
    """The Keras peer process: one row on the data in `path`, as a JSON line on stdout."""
    arrays = np.load(path)
    speed, loss, _, rates = bench_keras((arrays["x"], arrays["lengths"], arrays["labels"]), epochs,
                                        kind == "dropout")
    print(json.dumps({"sequences_per_second": speed, "loss": float(loss), "epoch_rates": rates}))


def bench_torch(data, epochs):
    """`bench/torch_peer.py` (PyTorch nn.LSTM, padded) in its own process on the same data (see
    `_peer_process`), or None when torch is not installed (the `bench-torch` extra)."""
    if importlib.util.find_spec("torch") is None:
        return None
    return _peer_process("bench/torch_peer.py", lambda path: [
        sys.executable, os.path.join(REPO_ROOT, "bench", "torch_peer.py"), path, str(epochs),
        str(BATCH), str(UNITS), str(KEEP), str(SEED)], data)


def timed(epoch, n, epochs):
    """Runs one warm-up epoch (tracing, XLA compiles), then `epochs` timed ones, each timed on
    its own: (the fastest epoch's seq/s, the last loss, others CPU, every epoch's seq/s)."""
    epoch()
    meter = CpuMeter()
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        loss = epoch()
        rates.append(n / (time.perf_counter() - start))
    return max(rates), loss, meter.others(), rates


class CpuMeter:
    """CPU used by *other* processes while a row was timed, in cores (Linux /proc/stat; None
    elsewhere). On a shared machine a row with a high value is slowed by someone else."""

    def __init__(self):
        self.pause()
        self.other = self.wall = 0.0
        self.resume()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # not idle/iowait
        own = os.times()  # with finished children: the CLI row's runs are this bench's own
        return (busy / os.sysconf("SC_CLK_TCK"),
                own.user + own.system + own.children_user + own.children_system, time.perf_counter())

    def resume(self):
        self._start = self._read()

    def pause(self):
        start, end = getattr(self, "_start", None), self._read()
        if start and end:
            self.other += max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
            self.wall += end[2] - start[2]
        self._start = None

    def others(self):
        self.pause()
        return self.other / self.wall if self.wall > 0 else None


# Issue 13's targets, as ratios measured in one run: the trainer path against each Keras peer.
TARGETS = (("Keras dropout", 5.5), ("Keras no dropout", 1.5))
# The CLI's marginal rate against the bare trainer loop's (checkpoints, summaries and all).
CLI_TARGET = 0.9
# The CLI's marginal rate against PyTorch nn.LSTM over padded batches (bench/torch_peer.py).
TORCH_TARGET = 2.0
# Cores other processes may use while a row is timed before its ratios are called invalid.
CONTENDED_CPU = 0.25


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024 sequences instead of 4096")
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs after warm-up, each timed on its own (a row is its fastest)")
    parser.add_argument("--no-bucketing", action="store_true")
    parser.add_argument("--no-jit", action="store_true")
    parser.add_argument("--skip-keras", action="store_true")
    parser.add_argument("--skip-cli", action="store_true",
                        help="leave out the python -m trainer.task row")
    parser.add_argument("--skip-inference", action="store_true",
                        help="leave out the SavedModel / TFLite latencies (they need the CLI row)")
    parser.add_argument("--cli-steps", default=",".join(map(str, CLI_STEPS)),
                        help="optimizer steps of the two CLI runs, shorter first")
    parser.add_argument("--mixed-precision", default="", choices=("", "mixed_bfloat16", "mixed_float16"),
                        help="the trainer path's and the CLI's precision (the peers stay float32)")
    parser.add_argument("--skip-torch", action="store_true",
                        help="leave out the PyTorch row (it runs when torch is installed)")
    parser.add_argument("--hand-step", action="store_true",
                        help="also time the old hand-written encoder train step")
    parser.add_argument("--keras-peer", choices=("dropout", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--peer-data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keras_peer:  # this file run as the Keras peer's own process (bench_keras_process)
        return _keras_peer_main(args.keras_peer, args.peer_data, args.epochs)
    wall = time.perf_counter()
    n = args.sequences or (1024 if args.quick else 4096)
    data = make_data(n)
    bucketing, jit = not args.no_bucketing, not args.no_jit
    rows = []

    epoch_rates = {}

    def add(label, speed, loss, other_cpu, rates=()):
        rows.append((label, speed, loss, other_cpu))
        epoch_rates[label] = rates
        print(f"{label:62s} {speed:8.1f} seq/s", flush=True)

    cli, cli_speed, inference = None, 0.0, {}
    with tempfile.TemporaryDirectory(prefix="rnn_throughput_") as workdir:
        speed, loss, other_cpu, details = bench_product(data, args.epochs, bucketing, jit, workdir, args.mixed_precision)
        add(f"seqtrain trainer path (bucketing={bucketing}, jit={jit}"
            + (f", {args.mixed_precision})" if args.mixed_precision else ")"), speed, loss, other_cpu,
            details["epoch_rates"])
        if not args.skip_cli:
            test_file = os.path.join(workdir, "test.jsonl")
            write_jsonl(test_file, tuple(part[:256] for part in data))
            cli_steps = tuple(int(v) for v in args.cli_steps.split(","))
            cli_speed, cli_other, cli = bench_cli(os.path.join(workdir, "train.jsonl"), test_file,
                                                  jit, bucketing, workdir, cli_steps, args.mixed_precision)
            add(f"  python -m trainer.task, marginal {cli_steps[0]}->{cli_steps[1]} steps",
                cli_speed, float("nan"), cli_other)
            if not args.skip_inference:
                inference = bench_inference(os.path.join(workdir, "train.jsonl"), test_file, data,
                                            jit, bucketing, workdir)
    if args.hand_step:
        add(f"  hand-written encoder step (bucketing={bucketing}, jit={jit})",
            *bench_hand_step(data, args.epochs, bucketing, jit))
    keras_rows = []
    if not args.skip_keras:
        for label, dropout in [("Keras Masking+LSTM dropout=recurrent_dropout=0.25", True),
                               ("Keras Masking+LSTM no dropout", False)]:
            add(label, *bench_keras_process(data, args.epochs, dropout))
            keras_rows.append(rows[-1])
    torch_row = None
    if not args.skip_torch:
        measured = bench_torch(data, args.epochs)
        if measured is None:
            print("PyTorch row skipped: torch is not installed (pip install -e \".[bench-torch]\")")
        else:
            add("PyTorch nn.LSTM padded, input/output dropout 0.25", *measured)
            torch_row = rows[-1]

    print(f"\nworkload: {n} sequences, {FEATURES} features, lengths U[{MIN_LEN},{MAX_LEN}], "
          f"LSTM {UNITS}, {CLASSES} classes, batch {BATCH}, Adam, keep {KEEP}; "
          f"{os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.2f}")
    prep = details["prepare_seconds"]
    print(f"trainer path: prepare {prep:.1f} s ({n / prep:.0f} records/s, "
          f"{details['prepare_input_mb'] / prep:.1f} MB/s of {details['prepare_input_mb']:.0f} MB "
          f"JSON Lines; {prep / details['warmup_seconds']:.2f} of the warm-up epoch), warm-up epoch "
          f"{details['warmup_seconds']:.1f} s, timed {details['steps']} steps in "
          f"{details['chunks']} chunks, {details['tokens_per_second']:.0f} real steps/s, "
          f"padding share {details['padding_share']:.3f}, bucket boundaries "
          f"{list(details['boundaries'])}")
    print(f"  model {details['model']}")
    print(f"  batch shapes in warm-up {details['shapes']['warmup']}; new in timed epochs "
          f"{details['shapes']['timed_new'] or 'none'}; jit_compile=auto would pick "
          f"{'on' if details['auto_jit'] else 'off'} for a {details['total_steps']}-step run")
    if cli:
        short, long = cli["steps"]
        print(f"  CLI runs: {short} steps {cli['seconds'][short]:.1f} s, {long} steps "
              f"{cli['seconds'][long]:.1f} s; one checkpoint "
              f"{cli['checkpoint_bytes'] / 1e6:.2f} MB for {cli['variable_bytes'] / 1e6:.2f} MB of "
              f"variables (model, optimizer slots, RNG, counters; {cli['checkpoints_kept']} kept)")
    print(f"\n{'model':62s} {'seq/s':>8s} {'train loss':>10s} {'others CPU':>10s}")
    for label, speed, loss, other_cpu in rows:
        others = "n/a" if other_cpu is None else f"{other_cpu:.2f}"
        shown = "n/a" if loss != loss else f"{loss:.4f}"  # the CLI row reports no loss
        print(f"{label:62s} {speed:8.1f} {shown:>10s} {others:>10s}")
    print("seq/s: the fastest timed epoch (the CLI: its marginal rate); every timed epoch:")
    for label, rates in epoch_rates.items():
        if rates:
            print(f"  {label.strip():60s} " + ", ".join(f"{rate:.1f}" for rate in rates))
    if keras_rows:
        ours = rows[0][1]
        print()
        for (name, target), (_, peer, _, _) in zip(TARGETS, keras_rows):
            ratio = ours / peer
            print(f"ratio vs {name + ':':18s} {ratio:5.2f}x (target >= {target}) "
                  f"{'MET' if ratio >= target else 'NOT MET'}")
    if torch_row:
        for name, speed in (("trainer loop", rows[0][1]), ("CLI", cli_speed)):
            if speed:
                ratio = speed / torch_row[1]
                print(f"ratio {name} vs PyTorch padded: {ratio:5.2f}x"
                      + (f" (target >= {TORCH_TARGET}) {'MET' if ratio >= TORCH_TARGET else 'NOT MET'}"
                         if name == "CLI" else ""))
    if cli:
        ratio = cli_speed / rows[0][1]
        print(f"ratio CLI / trainer loop: {ratio:5.2f}x (target >= {CLI_TARGET}) "
              f"{'MET' if ratio >= CLI_TARGET else 'NOT MET'}")
    if inference:
        print()
        for batch in (1, 64):
            saved, lite = inference[("saved_model", batch)], inference[("tflite", batch)]
            print(f"inference batch {batch:2d}: SavedModel {saved:8.3f} ms, TFLite {lite:8.3f} ms"
                  + (f" (TFLite / SavedModel {lite / saved:.2f}; target <= 1.0 "
                     f"{'MET' if lite <= saved else 'NOT MET'})" if batch == 1 else ""))
    print("others CPU: cores used by other processes while the row was timed (0 = quiet machine)")
    contended = [label.strip() for label, _, _, other_cpu in rows
                 if other_cpu is not None and other_cpu > CONTENDED_CPU]
    if contended:
        print(f"CONTENDED: other processes used more than {CONTENDED_CPU} cores while timing "
              f"{', '.join(contended)}; the ratios above do not hold, rerun on a quiet machine")
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s")
    return rows


if __name__ == "__main__":
    main()
