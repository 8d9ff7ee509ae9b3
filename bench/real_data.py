"""Real-data benchmark: the trainer's CLI defaults against standard baselines on a suite of sets.

    python bench/real_data.py --sets Coffee --seeds 42
    python bench/real_data.py                              # the whole suite, seeds 42 43 44
    python bench/real_data.py --sets JapaneseVowels --cv 5 --folds-limit 2
    python bench/real_data.py --sets PyPIFrameworks --skip-ours          # baselines only

What it measures. For every set of the suite (`<datasets-dir>/<Name>/{train,test}.jsonl`) and
every seed, it runs the product exactly as a user would, in a subprocess:

    python -m trainer.task --train-data TRAIN --test-data TEST --model-dir DIR --seed SEED [--extra-flags]

times it (wall minutes, export and its verification included) and reads the test accuracy from
`DIR/metrics.json`. For text sets the accuracy is measured through the exported `text` serving
signature instead: the raw test texts go through the newest SavedModel version under
`DIR/export/`, and its `classes` output (label strings) is compared with the labels. On the same
splits it measures baselines: MiniROCKET (per seed) and 1-NN DTW (once; deterministic) from aeon
for dense series, k-mer count models for token (DNA) sets and TF-IDF linear models for text
sets, all from scikit-learn. aeon and scikit-learn are optional (`pip install -e ".[bench]"`);
without them the baseline cells say so.

`--cv K` validates on the training split only: train.jsonl is cut into K stratified folds with
a seeded RNG (`--cv-seed`, the same folds for every seed and method), each fold is held out once
(passed to the trainer as --test-data) and the accuracy is the mean over folds; test.jsonl is
never read in this mode.

Prints a line per finished run (watchable), then one markdown table, which is appended with the
date, commit, command line and core count to `--results-file` (default
`bench/real_data_results.md`); `--json-out` writes every per-run number.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATASETS_DIR = REPO_ROOT / ".." / "shared" / "datasets"
DEFAULT_RESULTS_FILE = REPO_ROOT / "bench" / "real_data_results.md"
SUITE = ("JapaneseVowels", "Coffee", "ACSF1", "PigCVP", "GeneFamilies", "PyPIFrameworks")
INPUT_KINDS = ("features", "tokens", "text")  # the record field that names a set's kind
TEXT_BATCH = 256
# The environment the bench was started in: trainer runs get it unchanged, whatever this
# process later sets for its own TensorFlow (the text-signature check).
USER_ENV = dict(os.environ)


# ----------------------------------------------------------------------------- data


def read_jsonl(path: pathlib.Path) -> List[dict]:
    """The records of a JSON Lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: pathlib.Path, records: Sequence[dict]) -> None:
    """Writes records as JSON Lines, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def input_kind(record: dict) -> str:
    """Which input field a record carries: "features", "tokens" or "text"."""
    for kind in INPUT_KINDS:
        if kind in record:
            return kind
    raise ValueError(f"record has none of the input fields {INPUT_KINDS}: keys {sorted(record)}")


def labels_of(records: Sequence[dict]) -> np.ndarray:
    """Labels as strings (the trainer and the export see them as strings too)."""
    return np.array([str(record["label"]) for record in records])


def stratified_folds(labels: Sequence[str], k: int, seed: int) -> List[np.ndarray]:
    """K disjoint index arrays, each class dealt round-robin over the folds after a seeded shuffle.

    The deal of each class starts where the previous class stopped, so fold sizes differ by at
    most one. A class with fewer than K members is missing from some folds.
    """
    if k < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {k}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    folds: List[List[int]] = [[] for _ in range(k)]
    start = 0
    for label in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == label))
        for offset, index in enumerate(members):
            folds[(start + offset) % k].append(int(index))
        start = (start + len(members)) % k
    return [np.array(sorted(fold), dtype=int) for fold in folds]


class Split:
    """One train/test pair: the files the trainer reads and (lazily) their records."""

    def __init__(self, name: str, train_path: pathlib.Path, test_path: pathlib.Path,
                 train_records: Optional[List[dict]] = None, test_records: Optional[List[dict]] = None):
        self.name = name  # "test" for the archive split, "fold<k>" in CV
        self.train_path = train_path
        self.test_path = test_path
        self._train = train_records
        self._test = test_records

    @property
    def train(self) -> List[dict]:
        if self._train is None:
            self._train = read_jsonl(self.train_path)
        return self._train

    @property
    def test(self) -> List[dict]:
        if self._test is None:
            self._test = read_jsonl(self.test_path)
        return self._test


def archive_splits(set_dir: pathlib.Path) -> List[Split]:
    """The set's own train/test split."""
    return [Split("test", set_dir / "train.jsonl", set_dir / "test.jsonl")]


def cv_splits(set_dir: pathlib.Path, k: int, seed: int, limit: int, fold_dir: pathlib.Path) -> List[Split]:
    """The first `limit` (0: all) of K stratified folds of train.jsonl, written as JSON Lines."""
    records = read_jsonl(set_dir / "train.jsonl")
    folds = stratified_folds(labels_of(records), k, seed)
    splits = []
    for index, held_out in enumerate(folds[: limit or k]):
        keep = np.setdiff1d(np.arange(len(records)), held_out)
        train = [records[i] for i in keep]
        test = [records[i] for i in held_out]
        train_path, test_path = fold_dir / f"fold{index}" / "train.jsonl", fold_dir / f"fold{index}" / "heldout.jsonl"
        write_jsonl(train_path, train)
        write_jsonl(test_path, test)
        splits.append(Split(f"fold{index}", train_path, test_path, train, test))
    return splits


def set_kind(set_dir: pathlib.Path) -> str:
    """The input kind of a set, from the first record of its train file."""
    with open(set_dir / "train.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return input_kind(json.loads(line))
    raise ValueError(f"{set_dir / 'train.jsonl'} holds no records")


# ----------------------------------------------------------------------------- ours


def newest_export(export_root: pathlib.Path) -> pathlib.Path:
    """The highest integer version folder under an export dir (`tmp-*` folders are unverified)."""
    versions = [p for p in export_root.iterdir() if p.is_dir() and p.name.isdigit()] if export_root.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"no exported SavedModel version under {export_root}")
    return max(versions, key=lambda p: int(p.name))


def text_signature_accuracy(version_dir: pathlib.Path, texts: Sequence[str], labels: Sequence[str],
                            batch_size: int = TEXT_BATCH) -> float:
    """Accuracy of the SavedModel's `text` signature (raw strings in, label strings out)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the bench's own output readable
    import tensorflow as tf  # only the text path needs TensorFlow in this process

    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures["text"]
    correct = 0
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        classes = signature(text=tf.constant(batch, dtype=tf.string))["classes"].numpy()
        correct += sum(c.decode("utf-8") == label for c, label in zip(classes, labels[start:start + batch_size]))
    return correct / len(texts)


def trainer_command(split: Split, model_dir: pathlib.Path, seed: int, extra_flags: Sequence[str]) -> List[str]:
    """The user's command line: the CLI defaults plus the bench user's extra flags."""
    return [sys.executable, "-m", "trainer.task", "--train-data", str(split.train_path),
            "--test-data", str(split.test_path), "--model-dir", str(model_dir), "--seed", str(seed),
            *extra_flags]


def log_tail(path: pathlib.Path, lines: int = 15) -> str:
    """The last lines of a run's log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_ours(split: Split, kind: str, seed: int, model_dir: pathlib.Path, extra_flags: Sequence[str],
             timeout_min: float) -> dict:
    """Runs the trainer CLI once; returns accuracy, wall minutes and what metrics.json says.

    The trainer's output goes to `<model_dir>.log`. A failed run is recorded, not raised.
    """
    if model_dir.exists() and any(model_dir.iterdir()):
        raise FileExistsError(f"{model_dir} exists and would be resumed; use a fresh --work-dir")
    log_path = model_dir.with_name(model_dir.name + ".log")
    command = trainer_command(split, model_dir, seed, extra_flags)
    started = time.time()
    try:
        with open(log_path, "w") as log:
            code = subprocess.run(command, cwd=REPO_ROOT, env=USER_ENV, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout_min * 60 if timeout_min else None).returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    run = {"minutes": (time.time() - started) / 60, "model_dir": str(model_dir), "log": str(log_path)}
    if code != 0:
        return {**run, "accuracy": None, "error": f"trainer exit {code}:\n{log_tail(log_path)}"}
    metrics = json.loads((model_dir / "metrics.json").read_text())
    run.update(metrics_accuracy=metrics.get("test", {}).get("accuracy"), steps=metrics.get("steps"),
               train_seconds=metrics.get("train_seconds"))
    run["accuracy"] = run["metrics_accuracy"]
    if run["accuracy"] is None:
        return {**run, "error": "metrics.json has no test accuracy"}
    if kind == "text":
        try:
            version = newest_export(model_dir / "export")
            run["export_version"] = str(version)
            run["accuracy"] = text_signature_accuracy(version, [r["text"] for r in split.test], labels_of(split.test))
        except Exception as error:  # noqa: BLE001 - a bench records what went wrong and goes on
            return {**run, "accuracy": None, "error": f"text signature: {type(error).__name__}: {error}"}
    return run


# ----------------------------------------------------------------------------- baselines


def dense_arrays(records: Sequence[dict]) -> List[np.ndarray]:
    """Each record's features as float32 [D, T] (channels first, as aeon wants)."""
    return [np.asarray(record["features"], dtype=np.float32).T for record in records]


def pad_edge(series: Sequence[np.ndarray], length: int) -> np.ndarray:
    """[n, D, length]: each [D, T] series padded by repeating its last value."""
    return np.stack([np.pad(x, ((0, 0), (0, length - x.shape[1])), mode="edge") for x in series])


def padded_pair(split: Split):
    """Train and test series padded to the longest of both; labels."""
    train, test = dense_arrays(split.train), dense_arrays(split.test)
    length = max(x.shape[1] for x in train + test)
    return pad_edge(train, length), labels_of(split.train), pad_edge(test, length), labels_of(split.test)


def baseline_minirocket(split: Split, seed: int, args) -> dict:
    """MiniROCKET (aeon defaults, random_state=seed) on edge-padded series."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    x_train, y_train, x_test, y_test = padded_pair(split)
    model = MiniRocketClassifier(random_state=seed, n_jobs=args.n_jobs).fit(x_train, y_train)
    return {"accuracy": float(np.mean(model.predict(x_test) == y_test))}


def baseline_dtw(split: Split, seed: int, args) -> dict:
    """1-NN DTW (full window unless --dtw-window); unequal lengths are compared as they are."""
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    train, test = dense_arrays(split.train), dense_arrays(split.test)
    longest = max(x.shape[1] for x in train + test)
    if longest > args.dtw_max_length:
        return {"accuracy": None, "note": f"skipped: T={longest} > --dtw-max-length {args.dtw_max_length}"}
    if len({x.shape[1] for x in train + test}) == 1:
        train, test = np.stack(train), np.stack(test)
    params = {"window": args.dtw_window} if args.dtw_window else None
    model = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw", distance_params=params,
                                           n_jobs=args.n_jobs).fit(train, labels_of(split.train))
    note = f"window {args.dtw_window}" if args.dtw_window else "full window"
    return {"accuracy": float(np.mean(model.predict(test) == labels_of(split.test))), "note": note}


def kmer_words(records: Sequence[dict], k: int) -> List[str]:
    """Each token sequence as a string of overlapping k-mer words ("ATGCCC TGCCCC ...")."""
    out = []
    for record in records:
        s = "".join(record["tokens"])
        out.append(" ".join(s[i:i + k] for i in range(max(len(s) - k + 1, 1))))
    return out


def fit_score(pipeline, x_train, y_train, x_test, y_test) -> dict:
    """Fits a scikit-learn pipeline and returns its test accuracy."""
    pipeline.fit(x_train, y_train)
    return {"accuracy": float(np.mean(pipeline.predict(x_test) == y_test))}


def baseline_kmer_nb(split: Split, seed: int, args) -> dict:
    """6-mer words, 4-grams of them counted, multinomial naive Bayes (the classic DNA recipe)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    k, n = args.kmer, args.kmer_ngram
    pipeline = make_pipeline(CountVectorizer(ngram_range=(n, n), token_pattern=r"\S+", lowercase=False),
                             MultinomialNB(alpha=args.nb_alpha))
    result = fit_score(pipeline, kmer_words(split.train, k), labels_of(split.train),
                       kmer_words(split.test, k), labels_of(split.test))
    return {**result, "note": f"{k}-mer words, {n}-gram counts, alpha {args.nb_alpha}"}


def baseline_kmer_svc(split: Split, seed: int, args) -> dict:
    """6-mer TF-IDF + LinearSVC."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    k = args.kmer
    pipeline = make_pipeline(TfidfVectorizer(token_pattern=r"\S+", lowercase=False, sublinear_tf=True),
                             LinearSVC(random_state=0))
    result = fit_score(pipeline, kmer_words(split.train, k), labels_of(split.train),
                       kmer_words(split.test, k), labels_of(split.test))
    return {**result, "note": f"{k}-mer TF-IDF"}


def text_pipeline(classifier):
    """TF-IDF over word 1-2 grams in front of a classifier."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), classifier)


def baseline_tfidf_svc(split: Split, seed: int, args) -> dict:
    """TF-IDF (1-2 word grams) + LinearSVC."""
    from sklearn.svm import LinearSVC

    return fit_score(text_pipeline(LinearSVC(random_state=0)), [r["text"] for r in split.train],
                     labels_of(split.train), [r["text"] for r in split.test], labels_of(split.test))


def baseline_tfidf_logreg(split: Split, seed: int, args) -> dict:
    """TF-IDF (1-2 word grams) + logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return fit_score(text_pipeline(LogisticRegression(max_iter=2000)), [r["text"] for r in split.train],
                     labels_of(split.train), [r["text"] for r in split.test], labels_of(split.test))


class Baseline:
    """A baseline: which kind of set it applies to, whether it depends on the seed, its module."""

    def __init__(self, name: str, title: str, kind: str, per_seed: bool, needs: str, fn: Callable):
        self.name, self.title, self.kind, self.per_seed, self.needs, self.fn = name, title, kind, per_seed, needs, fn


BASELINES = {b.name: b for b in (
    Baseline("minirocket", "MiniROCKET", "features", True, "aeon", baseline_minirocket),
    Baseline("dtw", "1-NN DTW", "features", False, "aeon", baseline_dtw),
    Baseline("kmer_nb", "k-mer NB", "tokens", False, "sklearn", baseline_kmer_nb),
    Baseline("kmer_svc", "k-mer TF-IDF+LinearSVC", "tokens", False, "sklearn", baseline_kmer_svc),
    Baseline("tfidf_svc", "TF-IDF+LinearSVC", "text", False, "sklearn", baseline_tfidf_svc),
    Baseline("tfidf_logreg", "TF-IDF+LogReg", "text", False, "sklearn", baseline_tfidf_logreg),
)}


def installed(module: str) -> bool:
    """Whether a module can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def run_baseline(baseline: Baseline, split: Split, seed: int, args) -> dict:
    """Times one baseline fit + predict; a missing package or an error becomes a note."""
    if not installed(baseline.needs):
        package = "scikit-learn" if baseline.needs == "sklearn" else baseline.needs
        return {"accuracy": None, "minutes": 0.0, "note": f"{package} not installed"}
    started = time.time()
    try:
        result = baseline.fn(split, seed, args)
    except Exception as error:  # noqa: BLE001 - a bench records what went wrong and goes on
        result = {"accuracy": None, "error": f"{type(error).__name__}: {error}"}
    return {**result, "minutes": (time.time() - started) / 60}


# ----------------------------------------------------------------------------- the run


def print_run(row: dict) -> None:
    """One watchable line per finished run."""
    accuracy = "-" if row.get("accuracy") is None else f"{row['accuracy']:.4f}"
    extra = ""
    if row.get("metrics_accuracy") is not None and row["metrics_accuracy"] != row.get("accuracy"):
        extra = f" (metrics.json {row['metrics_accuracy']:.4f})"
    note = row.get("note") or (row.get("error", "").splitlines() or [""])[0]
    seed = "-" if row.get("seed") is None else row["seed"]
    print(f"[run] {row['set']} {row['split']} {row['method']} seed {seed}: accuracy {accuracy}{extra}, "
          f"{row.get('minutes', 0):.2f} min{'  ' + note if note else ''}", flush=True)
    if row.get("error"):
        print(row["error"], flush=True)


def selected_baselines(names: str, kind: str) -> List[Baseline]:
    """The baselines of `--baselines` that apply to a set of this kind."""
    chosen = list(BASELINES) if names == "all" else [n for n in names.split(",") if n and n != "none"]
    unknown = [n for n in chosen if n not in BASELINES]
    if unknown:
        raise SystemExit(f"unknown baselines {unknown}; known: {', '.join(BASELINES)}")
    return [BASELINES[n] for n in chosen if BASELINES[n].kind == kind]


def bench_set(name: str, set_dir: pathlib.Path, args, extra_flags: List[str], work: pathlib.Path) -> List[dict]:
    """Every run (ours and baselines, every seed and split) on one set; per-run rows."""
    kind = set_kind(set_dir)
    if args.cv:
        splits = cv_splits(set_dir, args.cv, args.cv_seed, args.folds_limit, work / "folds" / name)
    else:
        splits = archive_splits(set_dir)
    rows = []
    for split in splits:
        tag = "" if split.name == "test" else f"-{split.name}"
        if not args.skip_ours:
            for seed in args.seeds:
                run = run_ours(split, kind, seed, work / f"{name}-{seed}{tag}", extra_flags, args.run_timeout_min)
                rows.append({"set": name, "kind": kind, "split": split.name, "method": "ours", "seed": seed, **run})
                print_run(rows[-1])
        for baseline in selected_baselines(args.baselines, kind):
            for seed in (args.seeds if baseline.per_seed else [None]):
                result = run_baseline(baseline, split, seed, args)
                rows.append({"set": name, "kind": kind, "split": split.name, "method": baseline.name,
                             "seed": seed, **result})
                print_run(rows[-1])
    return rows


# ----------------------------------------------------------------------------- the table


def per_seed_means(rows: Sequence[dict]) -> Dict[object, float]:
    """Mean accuracy over splits (folds) for each seed; seeds with a failed split are left out."""
    by_seed: Dict[object, List[Optional[float]]] = {}
    for row in rows:
        by_seed.setdefault(row["seed"], []).append(row["accuracy"])
    return {seed: statistics.mean(a) for seed, a in by_seed.items() if a and None not in a}


def mean_std(values: Sequence[float]) -> str:
    """"0.9821 ± 0.0040 (n=3)", or "0.9821 (n=1)"."""
    if len(values) == 1:
        return f"{values[0]:.4f} (n=1)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def baseline_cell(rows: Sequence[dict]) -> str:
    """Accuracy (mean over seeds where per seed) and minutes per fit, or the reason there is none."""
    if not rows:
        return "n/a"
    means = list(per_seed_means(rows).values())
    minutes = statistics.mean(row.get("minutes", 0.0) for row in rows)
    if not means:
        first = next((r for r in rows if r.get("accuracy") is None), rows[0])
        return first.get("note") or "failed: " + (first.get("error", "").splitlines() or ["?"])[0]
    accuracy = mean_std(means) if len(means) > 1 else f"{means[0]:.4f}"
    return f"{accuracy}, {minutes:.2f} min"


def set_label(name: str, rows: Sequence[dict], args) -> str:
    """The set column: its name, and in CV mode which folds."""
    if not args.cv:
        return name
    folds = sorted({row["split"] for row in rows})
    return f"{name} ({args.cv}-fold CV on train, {len(folds)} fold{'s' if len(folds) > 1 else ''})"


def table_row(name: str, rows: Sequence[dict], args) -> str:
    """One markdown row of the results table."""
    ours = [r for r in rows if r["method"] == "ours"]
    if args.skip_ours:
        ours_cells = ["not run", "-", "-"]
    else:
        accuracies = list(per_seed_means(ours).values())
        failed = len(args.seeds) - len(accuracies)
        if accuracies:
            ours_cells = [mean_std(accuracies) + (f", {failed} failed" if failed else ""),
                          f"{min(accuracies):.4f}-{max(accuracies):.4f}",
                          f"{statistics.mean(r['minutes'] for r in ours):.2f}"]
        else:
            ours_cells = [f"all {failed} failed", "-", "-"]
    kind = rows[0]["kind"] if rows else ""
    cells = {}
    for baseline in BASELINES.values():
        chosen = [r for r in rows if r["method"] == baseline.name]
        cells[baseline.name] = baseline_cell(chosen) if chosen else ("not run" if baseline.kind == kind else "n/a")
    others = "; ".join(f"{b.title} {cells[b.name]}" for b in BASELINES.values()
                       if b.kind == kind and b.kind != "features" and cells[b.name] != "not run")
    return "| " + " | ".join([set_label(name, rows, args), *ours_cells, cells["minirocket"], cells["dtw"],
                              others or "-"]) + " |"


TABLE_HEADER = ("| set | ours mean ± std (n seeds) | min-max | minutes per run (mean) | MiniROCKET | 1-NN DTW "
                "| other baselines |\n|---|---|---|---|---|---|---|")


def results_table(rows_by_set: Dict[str, List[dict]], args) -> str:
    """The markdown table over all sets."""
    return "\n".join([TABLE_HEADER] + [table_row(name, rows, args) for name, rows in rows_by_set.items()])


# ----------------------------------------------------------------------------- recording


def git_commit() -> str:
    """Short HEAD commit, "+dirty" when the working tree has changes; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


RESULTS_HEADER = """# Real-data benchmark: recorded runs

Appended by `python bench/real_data.py` (see its docstring and `bench/README.md`). "ours" is the
trainer's CLI defaults (plus the extra flags shown in the command), test accuracy over seeds;
baselines on the same splits, with minutes per fit.
"""


def append_results(path: pathlib.Path, table: str, meta: dict) -> None:
    """Appends the table with date, commit, command line and core count (header if new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = f"{meta['cv']}-fold CV on train (cv seed {meta['cv_seed']})" if meta["cv"] else "archive train/test"
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write(RESULTS_HEADER)
        f.write(f"\n## {meta['date']}, commit {meta['commit']}, {meta['cpu_count']} CPU cores\n\n"
                f"`{meta['command']}`  \nmode: {mode}; seeds {meta['seeds']}\n\n{table}\n")


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The bench's own flags; seeds and sets as lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets-dir", default=str(DEFAULT_DATASETS_DIR),
                        help="folder of <Name>/{train,test}.jsonl (default: ../shared/datasets from the repo root)")
    parser.add_argument("--sets", default=",".join(SUITE), help="comma list of set names")
    parser.add_argument("--seeds", default="42,43,44", help="comma list of seeds")
    parser.add_argument("--extra-flags", default="", help="trainer flags added to every run (split like a shell)")
    parser.add_argument("--baselines", default="all",
                        help=f"comma list of {', '.join(BASELINES)}; 'all' or 'none' (only those that apply run)")
    parser.add_argument("--skip-ours", action="store_true", help="run the baselines only")
    parser.add_argument("--cv", type=int, default=0, help="K: K-fold CV on train.jsonl instead of train/test")
    parser.add_argument("--folds-limit", type=int, default=0, help="run only the first N folds (0: all)")
    parser.add_argument("--cv-seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument("--dtw-window", type=float, default=0.0, help="DTW window as a fraction (0: full)")
    parser.add_argument("--dtw-max-length", type=int, default=1000, help="skip 1-NN DTW for longer series")
    parser.add_argument("--kmer", type=int, default=6, help="k of the k-mer baselines")
    parser.add_argument("--kmer-ngram", type=int, default=4, help="n-grams of k-mer words counted by k-mer NB")
    parser.add_argument("--nb-alpha", type=float, default=0.1, help="smoothing of k-mer NB")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads of the aeon baselines")
    parser.add_argument("--run-timeout-min", type=float, default=0.0, help="kill a trainer run after this (0: never)")
    parser.add_argument("--work-dir", default="",
                        help="model dirs, trainer logs and fold files (default: a fresh temp dir, removed at the end)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the default temp work dir")
    parser.add_argument("--results-file", default=str(DEFAULT_RESULTS_FILE),
                        help="markdown file the table is appended to")
    parser.add_argument("--json-out", default="", help="write every per-run number here")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the benchmark; returns 0, or 1 when some run failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    extra_flags = shlex.split(args.extra_flags)
    datasets = pathlib.Path(args.datasets_dir).resolve()
    missing = [name for name in args.sets if not (datasets / name / "train.jsonl").is_file()]
    if missing:
        raise SystemExit(f"no train.jsonl for {missing} under {datasets}")
    work = pathlib.Path(args.work_dir) if args.work_dir else pathlib.Path(tempfile.mkdtemp(prefix="seqtrain-real-"))
    work.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": git_commit(),
            "command": "python bench/real_data.py " + shlex.join(argv), "cpu_count": cpu_count(),
            "cv": args.cv, "cv_seed": args.cv_seed, "seeds": ",".join(map(str, args.seeds)),
            "extra_flags": extra_flags, "datasets_dir": str(datasets), "work_dir": str(work)}
    print(f"[bench] work dir {work}; {meta['cpu_count']} cores; commit {meta['commit']}", flush=True)
    rows_by_set = {}
    try:
        for name in args.sets:
            rows_by_set[name] = bench_set(name, datasets / name, args, extra_flags, work)
    finally:
        if not args.work_dir and not args.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
    table = results_table(rows_by_set, args)
    print("\n" + table, flush=True)
    append_results(pathlib.Path(args.results_file), table, meta)
    if args.json_out:
        runs = [row for rows in rows_by_set.values() for row in rows]
        pathlib.Path(args.json_out).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    failed = any(row.get("error") for rows in rows_by_set.values() for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
