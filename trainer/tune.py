"""Hyperparameter search: `python -m trainer.tune [tuning flags] [trainer flags]`
(or `python -m trainer.task --tune ...`).

A `keras_tuner.Tuner` whose `run_trial` runs our own trainer, not `model.fit`: each trial is
the trainer with `--config <trial>/trial_config.json` in a fresh subprocess (started through
`trainer.trial_process`, which dies with the tuner), with its own model dir, our data pipeline, early stopping and best checkpoint; the objective is read back
from the trial's `metrics.json` (the eval split, evaluated on the best checkpoint). A
subprocess per trial keeps the tuner's memory flat (in-process trials leak ~9 MB each) and a
crashed trial cannot take the search down.

The search resumes: rerun the same command (with a larger `--max-trials` if you like) and the
finished trials are kept; a trial killed mid-run is run again first and its trainer resumes from
the trial's own checkpoint. At the end the best trial is retrained from its hyperparameters
into `<tuning dir>/best/trial_<id>`, exported, and its objective compared with the trial's
(`best.json`). `results.csv` / `results.json` list every trial. See trainer/TUNING.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import keras_tuner
import tensorflow as tf

from data.config import AUTO_EVAL_FRACTION
from trainer import config as config_lib
from trainer import environment, flags, tuning_space

PROJECT = "search"
RESULTS_CSV, RESULTS_JSON, BEST_JSON = "results.csv", "results.json", "best.json"
TRIAL_CONFIG, TRIAL_SUMMARY, TRIAL_LOG = "trial_config.json", "summary.json", "train.log"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.tune",
        description="Search hyperparameters with keras-tuner, each trial one run of the trainer. "
                    "Every other flag is a trainer flag (python -m trainer.task --help) and fixes that "
                    "value for all trials (a fixed flag also leaves the default search space).",
        allow_abbrev=False)
    parser.add_argument("--tune", action="store_true", help="accepted so `trainer.task --tune` flags pass through")
    parser.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random")
    parser.add_argument("--max-trials", type=int, default=10,
                        help="trials in all, counting those of earlier runs in the same tuning dir")
    parser.add_argument("--tuning-dir", default="tuning", help="trials, results and the best model go here")
    parser.add_argument("--objective", default="",
                        help="an eval metric of the trainer (loss, accuracy, macro_f1, ece, ...); "
                             "default: --early-stopping-metric. Trials also early-stop on it.")
    parser.add_argument("--direction", choices=("min", "max", "auto"), default="auto",
                        help="auto: min for loss/ece, else max")
    parser.add_argument("--search-space", default="", help="YAML/JSON space file (see trainer/tuning_space.py)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--initial-points", type=int, default=0,
                        help="bayesian: random trials before the Gaussian process (0: 3 per tuned field)")
    parser.add_argument("--max-epochs", type=int, default=9, help="hyperband: epochs of the longest trial")
    parser.add_argument("--hyperband-factor", type=int, default=3)
    parser.add_argument("--trial-timeout-secs", type=int, default=0, help="kill a trial after this long (0: never)")
    parser.add_argument("--retrain-best", action=argparse.BooleanOptionalAction, default=True,
                        help="retrain the best trial from its hyperparameters and export it")
    parser.add_argument("--reproduce-tolerance", type=float, default=0.01,
                        help="largest |retrained - trial| objective difference that counts as reproduced")
    return parser


def direction_for(objective: str, direction: str) -> str:
    if direction != "auto":
        return direction
    from trainer.config import higher_is_better  # the rule that picks each trial's best checkpoint

    return "max" if higher_is_better(objective) else "min"


def explicit_fields(argv: Sequence[str]) -> List[str]:
    """Trainer fields the user set on the command line or in `--config`: those stay fixed."""
    args, _ = flags.build_parser().parse_known_args(list(argv))
    names = set(vars(args)) - set(flags.COMMAND_FLAGS)
    if "config" in vars(args):
        for key, value in flags.read_config_file(args.config).items():
            if key in config_lib.SECTIONS and isinstance(value, dict):  # nested by section
                names |= {k.replace("-", "_") for k in value}
            else:
                names.add(key.replace("-", "_"))
    return sorted(names)


def search_space(space_file: str, trainer_argv: Sequence[str]) -> Dict[str, Any]:
    """The space file's entries, or the default space minus the fields the user's flags fix.

    A field that is both in a space file and a flag is tuned (the file is explicit); a warning
    says so.
    """
    fixed = explicit_fields(trainer_argv)
    if not space_file:
        return tuning_space.without(tuning_space.DEFAULT_SPACE, fixed)
    space = tuning_space.read_space(space_file)
    if set(space) & set(fixed):
        logging.warning("%s are both flags and in the search space: the space wins", sorted(set(space) & set(fixed)))
    return space


def rss_mb() -> float:
    """This process's resident memory in MB (/proc VmRSS; peak RSS where /proc is missing)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_json(path: str, value) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)


def run_trainer(config: config_lib.Config, run_dir: str, timeout_secs: int = 0) -> Dict[str, Any]:
    """Trains `config` in a fresh trainer process (`trainer.trial_process`); returns its metrics.json.

    The config goes to `<run_dir>/trial_config.json`, the output to `<run_dir>/train.log`.
    Raises keras_tuner.errors.FailedTrialError (with the log's tail) when the run fails or
    outlives `timeout_secs`.
    """
    tf.io.gfile.makedirs(run_dir)
    config_path = tf.io.gfile.join(run_dir, TRIAL_CONFIG)
    _write_json(config_path, tuning_space.to_flat_dict(config))
    # A trial is one single-machine run, never a Vertex tuning trial or a multi-worker job of its own.
    env = environment.without_run_variables()
    package_root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "trainer.trial_process", str(os.getpid()), "--config", config_path]
    # The child's output needs a local file descriptor; it is copied next to the trial's
    # config afterwards, so a gs:// tuning dir keeps the log too.
    with tempfile.NamedTemporaryFile(prefix="seqtrain-trial-", suffix=".log", delete=False) as log:
        local_log = log.name
        # No preexec_fn (see trainer/trial_process.py): the child sets its own parent-death signal.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            code = process.wait(timeout=timeout_secs or None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        except BaseException:  # Ctrl-C or SIGTERM of the tuner: take the trainer down with us
            process.kill()
            process.wait()
            raise
        finally:
            log.flush()
            log_path = tf.io.gfile.join(run_dir, TRIAL_LOG)
            tf.io.gfile.copy(local_log, log_path, overwrite=True)
    tail = "".join(pathlib.Path(local_log).read_text(errors="replace").splitlines(True)[-25:])
    pathlib.Path(local_log).unlink()
    if code is None:
        raise keras_tuner.errors.FailedTrialError(
            f"trial in {run_dir} ran past --trial-timeout-secs={timeout_secs}; killed; log {log_path}:\n{tail}")
    metrics = _read_json(tf.io.gfile.join(config.train.model_dir, "metrics.json"))
    if code != 0 or metrics is None:
        raise keras_tuner.errors.FailedTrialError(
            f"trainer exited with {code} (metrics.json {'missing' if metrics is None else 'present'}); "
            f"log {log_path}:\n{tail}")
    return metrics


def objective_value(metrics: Dict[str, Any], objective: str) -> float:
    """The objective from a trainer's metrics.json: the eval split, on the best checkpoint.

    Raises keras_tuner.errors.FatalError when there is no eval split or no such metric: every
    further trial would fail the same way.
    """
    if "eval" not in metrics:
        raise keras_tuner.errors.FatalError(
            "the trial has no eval split (eval_fraction 0 and no --eval-data): tuning needs one")
    if objective not in metrics["eval"]:
        raise keras_tuner.errors.FatalError(
            f"--objective {objective!r} is not an eval metric; expected one of {sorted(metrics['eval'])}")
    return float(metrics["eval"][objective])


class TrainerTuner(keras_tuner.Tuner):
    """Runs every trial as one `trainer.task` process in `<trial dir>/model`.

    Args:
      oracle: a keras-tuner oracle whose `hyperparameters` already declare the whole space.
      base_config: the config every trial starts from (the user's flags).
      objective: eval metric name returned to the oracle.
      trial_timeout_secs: kill a trial after this long (0: never).
      **kwargs: `directory`, `project_name`, `overwrite` as for `keras_tuner.Tuner`.
    """

    def __init__(self, oracle, base_config: config_lib.Config, objective: str,
                 trial_timeout_secs: int = 0, **kwargs):
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.base_config = base_config
        self.objective_name = objective
        self.trial_timeout_secs = trial_timeout_secs

    def trial_config(self, trial) -> config_lib.Config:
        """The trainer config of `trial`: base config, its values, its own model dir.

        Hyperband's budget is in epochs: a trial trains `tuner/epochs - tuner/initial_epoch`
        epochs (max_steps 0), warm-started from the best checkpoint of the trial it continues
        (model weights only; the optimizer and learning-rate schedule start afresh).
        """
        hp = trial.hyperparameters.values
        config = trial_config_for(self.base_config, hp, self.get_trial_dir(trial.trial_id))
        if "tuner/epochs" in hp:
            train = {"max_steps": 0, "num_epochs": max(1, hp["tuner/epochs"] - hp.get("tuner/initial_epoch", 0))}
            if hp.get("tuner/trial_id"):
                train["warm_start_from"] = tf.io.gfile.join(self.get_trial_dir(hp["tuner/trial_id"]), "model")
            config = _replace_train(config, **train)
        return config

    def run_trial(self, trial, *args, **kwargs):
        try:
            config = self.trial_config(trial)
        except ValueError as error:  # a combination the config classes reject
            raise keras_tuner.errors.FailedTrialError(f"invalid hyperparameters: {error}")
        started = time.time()
        metrics = run_trainer(config, self.get_trial_dir(trial.trial_id), self.trial_timeout_secs)
        value = objective_value(metrics, self.objective_name)
        _write_json(tf.io.gfile.join(self.get_trial_dir(trial.trial_id), TRIAL_SUMMARY), {
            "trial_id": trial.trial_id, "objective": self.objective_name, "value": value,
            "steps": metrics.get("steps"), "best_step": metrics.get("best", {}).get("step"),
            "seconds": round(time.time() - started, 2), "model_dir": config.train.model_dir,
            "tuner_id": self.tuner_id, "tuner_pid": os.getpid(), "tuner_rss_mb": round(rss_mb(), 1)})
        return {self.objective_name: value}

    # Models live in the trials' model dirs; keras-tuner's own model saving is not used.
    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        raise NotImplementedError("trials are trainer runs: load <trial dir>/model/export or its best/ checkpoint")


def _replace_train(config: config_lib.Config, **values) -> config_lib.Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **values))


def trial_config_for(base: config_lib.Config, values: Dict[str, Any], trial_dir: str) -> config_lib.Config:
    """`base` with a trial's values, its model dir `<trial_dir>/model`, and no export (only the
    retrained best is exported)."""
    config = tuning_space.apply(base, values)
    return _replace_train(config, model_dir=tf.io.gfile.join(trial_dir, "model"), export_dir="",
                          export_formats="")


def make_oracle(args, objective: str, hyperparameters, seed: int):
    """The keras-tuner oracle that `--tuner` names, given the declared space up front."""
    goal = keras_tuner.Objective(objective, direction_for(objective, args.direction))
    common = dict(objective=goal, hyperparameters=hyperparameters, seed=seed,
                  tune_new_entries=False, allow_new_entries=False)
    if args.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=args.max_trials, **common)
    if args.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=args.max_trials, num_initial_points=args.initial_points or None, **common)
    oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=args.max_epochs, factor=args.hyperband_factor,
                                                 **common)
    oracle.max_trials = args.max_trials  # a cap on top of Hyperband's own schedule
    return oracle


def results_rows(tuner: TrainerTuner) -> List[Dict[str, Any]]:
    """One row per trial the oracle knows: id, status, value, steps, seconds, hyperparameters."""
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        summary = _read_json(tf.io.gfile.join(tuner.get_trial_dir(trial_id), TRIAL_SUMMARY)) or {}
        row = {"trial_id": trial_id, "status": trial.status, tuner.objective_name: summary.get("value"),
               "steps": summary.get("steps"), "best_step": summary.get("best_step"),
               "seconds": summary.get("seconds"), "tuner_id": summary.get("tuner_id"),
               "tuner_rss_mb": summary.get("tuner_rss_mb")}
        row.update({name: value for name, value in sorted(trial.hyperparameters.values.items())})
        row["model_dir"] = summary.get("model_dir")
        rows.append(row)
    return rows


def write_results(tuner: TrainerTuner, tuning_dir: str, direction: str) -> List[Dict[str, Any]]:
    """Writes results.csv and results.json into the tuning dir, prints the table; returns the rows."""
    rows = results_rows(tuner)
    columns: List[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with tf.io.gfile.GFile(tf.io.gfile.join(tuning_dir, RESULTS_CSV), "w") as f:
        f.write(text.getvalue())
    best = tuner.oracle.get_best_trials(1)
    _write_json(tf.io.gfile.join(tuning_dir, RESULTS_JSON), {
        "objective": tuner.objective_name, "direction": direction,
        "best_trial_id": best[0].trial_id if best else None, "trials": rows})
    shown = [c for c in columns if c not in ("model_dir", "tuner_id", "tuner_rss_mb")]
    cells = [[_cell(row.get(c)) for c in shown] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(shown)]
    print(" | ".join(c.ljust(w) for c, w in zip(shown, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    return rows


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def retrain_best(tuner: TrainerTuner, tuning_dir: str, tolerance: float) -> Optional[Dict[str, Any]]:
    """Retrains the best trial from its hyperparameters (not its checkpoint) and exports it.

    The run goes to `<tuning dir>/best/trial_<id>` with the user's export settings; `best.json`
    records both objective values and whether they agree within `tolerance`. Skipped when
    best.json already records this trial. Returns the best.json dict, or None with no trial.
    """
    best = tuner.oracle.get_best_trials(1)
    if not best:
        logging.warning("no completed trial: nothing to retrain")
        return None
    trial = best[0]
    path = tf.io.gfile.join(tuning_dir, BEST_JSON)
    previous = _read_json(path)
    if previous and previous.get("trial_id") == trial.trial_id and previous.get("retrained") is not None:
        print(f"best trial {trial.trial_id} was already retrained: {path}")
        return previous
    trial_config = config_lib.from_dict(_read_json(tf.io.gfile.join(tuner.get_trial_dir(trial.trial_id), TRIAL_CONFIG)))
    base = tuner.base_config.train
    train = {"model_dir": tf.io.gfile.join(tuning_dir, "best", f"trial_{trial.trial_id}"),
             "export_dir": base.export_dir, "export_formats": base.export_formats}
    hp = trial.hyperparameters.values
    if "tuner/epochs" in hp:  # a Hyperband continuation: the whole budget, from scratch
        train.update(num_epochs=hp["tuner/epochs"], warm_start_from="")
    config = _replace_train(trial_config, **train)
    print(f"retraining best trial {trial.trial_id} into {config.train.model_dir}")
    metrics = run_trainer(config, config.train.model_dir)
    retrained = objective_value(metrics, tuner.objective_name)
    found = float(trial.score)
    record = {"trial_id": trial.trial_id, "objective": tuner.objective_name,
              "hyperparameters": {k: v for k, v in hp.items()}, "trial_value": found,
              "retrained": retrained, "difference": abs(retrained - found), "tolerance": tolerance,
              "reproduced": abs(retrained - found) <= tolerance, "model_dir": config.train.model_dir,
              "export": metrics.get("export", {})}
    _write_json(path, record)
    print(f"best trial {trial.trial_id}: {tuner.objective_name} {found:.6g} in the search, "
          f"{retrained:.6g} retrained -> " + ("reproduced" if record["reproduced"] else
                                             f"NOT reproduced within {tolerance} (see TUNING.md)"))
    if not record["reproduced"]:
        logging.warning("best trial did not reproduce: |%g - %g| > %g", retrained, found, tolerance)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args, trainer_argv = build_parser().parse_known_args(argv)
    if args.max_trials < 1:  # keras-tuner reads 0 as "no limit"
        raise SystemExit(f"--max-trials must be >= 1, got {args.max_trials}")
    base = flags.parse_config(trainer_argv)
    objective = args.objective or base.train.early_stopping_metric
    if args.direction not in ("auto", direction_for(objective, "auto")):
        logging.warning("--direction %s for %s: each trial still keeps the checkpoint the trainer's own "
                        "rule calls best (%s)", args.direction, objective, direction_for(objective, "auto"))
    base = _replace_train(base, early_stopping_metric=objective)
    if base.data.eval_fraction < 0 and not base.data.eval_data:
        # Trials are compared on a hold-out, so tuning keeps one whatever the set's size.
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, eval_fraction=AUTO_EVAL_FRACTION))
    space = search_space(args.search_space, trainer_argv)
    hyperparameters = tuning_space.declare(space)
    direction = direction_for(objective, args.direction)
    if environment.set_kerastuner_env_from_tf_config():
        logging.info("distributed tuning from TF_CONFIG as %s (oracle %s:%s)", os.environ["KERASTUNER_TUNER_ID"],
                     os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"])
    is_worker = environment.tuner_role() == "worker"
    tf.io.gfile.makedirs(args.tuning_dir)
    oracle = make_oracle(args, objective, hyperparameters, base.train.seed)
    tuner = TrainerTuner(oracle, base, objective, trial_timeout_secs=args.trial_timeout_secs,
                         directory=args.tuning_dir, project_name=PROJECT,
                         overwrite=args.overwrite and not is_worker)  # a worker must never wipe the chief's dir
    print(f"tuning {sorted(space)} with {args.tuner}, {direction} eval {objective}, "
          f"up to {args.max_trials} trials, in {args.tuning_dir}")
    tuner.search()
    if is_worker:
        return 0  # the chief writes the results and retrains the best
    write_results(tuner, args.tuning_dir, direction)
    if args.retrain_best:
        retrain_best(tuner, args.tuning_dir, args.reproduce_tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
