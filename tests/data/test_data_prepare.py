"""prepare_data / prepare_files: bundled data, hold-out, spec assets, statistics, resume."""

import numpy as np
import pytest
import tensorflow as tf

from data_testlib import dense_records, write_csv, write_jsonl
import dataclasses

from data.config import PREPARES_DATA, DataConfig, bundled_paths
from data.pipeline import make_dataset
from data.prepare import prepare_data, prepare_files, read_manifest
from data.spec import DataSpec


def split_ids(prepared, split, config=DataConfig()):
    info = prepared.splits[split]
    ds = make_dataset(info.files, prepared.spec, config, training=False, seed=0,
                      with_targets=info.has_targets)
    return [i.decode() for batch in ds for i in batch["id"].numpy()]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("bundled"))
    # A 10% hold-out pinned: these tests check its mechanics (the default holds out nothing
    # from sets this small; see the auto test at the end).
    return model_dir, prepare_data(DataConfig(eval_fraction=0.1), model_dir, seed=42)


def test_bundled_japanese_vowels(bundled):
    model_dir, prepared = bundled
    counts = {name: info.num_records for name, info in prepared.splits.items()}
    assert counts == {"train": 243, "eval": 27, "test": 370}
    spec = prepared.spec
    assert (spec.input_kind, spec.target_kind, spec.feature_dim) == ("features", "label", 12)
    assert spec.labels == tuple(str(i) for i in range(1, 10))
    assert sum(spec.label_counts) == 243 == spec.num_train_examples
    assert len(spec.length_quantiles) == 11 and spec.length_quantiles[0] == 7
    assert all(s > 0 for s in spec.feature_std)
    assert DataSpec.load(model_dir) == spec  # saved as assets, read back equal
    manifest = read_manifest(model_dir)
    assert manifest["splits"]["test"]["sources"] == [bundled_paths()["test"]]


@pytest.mark.slow  # prepares the bundled data twice more
def test_eval_hold_out_is_seeded_and_drawn_across_classes(bundled, tmp_path):
    _, prepared = bundled
    eval_ids = split_ids(prepared, "eval")
    # The train file is sorted by class: "the last 10%" would be class 9 only.
    assert sorted(map(int, eval_ids)) != list(range(243, 270))
    eval_labels = {int(i) // 30 for i in eval_ids}  # 30 records per class, ids 0..269 in order
    assert len(eval_labels) >= 5
    assert not set(eval_ids) & set(split_ids(prepared, "train"))
    again = prepare_data(DataConfig(eval_fraction=0.1), str(tmp_path / "same"), seed=42)
    assert sorted(split_ids(again, "eval")) == sorted(eval_ids)
    other = prepare_data(DataConfig(eval_fraction=0.1), str(tmp_path / "other"), seed=7)
    assert sorted(split_ids(other, "eval")) != sorted(eval_ids)


def test_resume_reuses_prepared_data_without_sources(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", dense_records(30))
    config = DataConfig(train_data=train)
    model_dir = str(tmp_path / "model")
    first = prepare_data(config, model_dir, seed=3)
    assert not first.reused
    tf.io.gfile.remove(train)  # a resume must not read the source files again
    second = prepare_data(config, model_dir, seed=3)
    assert second.reused and second.spec == first.spec and second.splits == first.splits
    with pytest.raises(ValueError, match="eval_fraction"):
        prepare_data(DataConfig(train_data=train, eval_fraction=0.5), model_dir, seed=3)


# A value other than the default for each field (validated by DataConfig), by type or by name.
_OTHER_VALUE = {"eval_fraction": 0.5, "long_sequences": "reject", "csv_delimiter": ";"}


def _other_value(field):
    if field.name in _OTHER_VALUE:
        return _OTHER_VALUE[field.name]
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    others = {"bool": lambda v: not v, "int": lambda v: v + 1, "float": lambda v: v / 2, "str": lambda v: "other"}
    return others[kind](field.default)


def test_every_field_marked_as_preparing_data_refuses_a_stale_resume(tmp_path):
    """A resume that changes a field marked PREPARES_DATA is refused with the field named; one
    that changes any other data field reuses the prepared data (the mark is the only list)."""
    train = write_jsonl(tmp_path / "train.jsonl", dense_records(30))
    config = DataConfig(train_data=train)
    model_dir = str(tmp_path / "model")
    prepare_data(config, model_dir, seed=3)
    marked = [f for f in dataclasses.fields(DataConfig) if f.metadata.get(PREPARES_DATA)]
    assert {"train_data", "max_length", "min_token_count", "lowercase"} <= {f.name for f in marked}
    for field in dataclasses.fields(DataConfig):
        if field.name == "train_data":
            continue  # set above; its change is the case of test_resume_reuses_prepared_data_without_sources
        changed = dataclasses.replace(config, **{field.name: _other_value(field)})
        if field in marked:
            with pytest.raises(ValueError, match=f"other data settings.*'{field.name}'"):
                prepare_data(changed, model_dir, seed=3)
        else:
            assert prepare_data(changed, model_dir, seed=3).reused, field.name


def test_statistics_over_real_steps_of_the_train_split(tmp_path):
    train_records = dense_records(12, dim=2)
    train = write_jsonl(tmp_path / "train.jsonl", train_records)
    evaluation = write_jsonl(tmp_path / "eval.jsonl", dense_records(4, first_id=100))
    prepared = prepare_data(DataConfig(train_data=train, eval_data=evaluation),
                            str(tmp_path / "m"), seed=0)
    steps = np.array([s for r in train_records for s in r["features"]])  # eval not included
    spec = prepared.spec
    np.testing.assert_allclose(spec.feature_mean, steps.mean(axis=0), rtol=1e-6)
    assert spec.feature_std[0] == pytest.approx(steps[:, 0].std(), rel=1e-6)
    assert spec.feature_std[1] == 1.0  # constant feature
    assert spec.label_counts == (4, 4, 4) and spec.num_train_examples == 12
    assert spec.length_quantiles[0] == 1 and spec.length_quantiles[-1] == 5
    assert prepared.splits["eval"].num_records == 4 and "test" not in prepared.splits


def test_statistics_leave_out_the_drawn_hold_out(tmp_path):
    """Statistics are gathered while reading and the hold-out's taken back out: they equal
    those of the training records alone, classes and tokens seen only in the hold-out included."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        length = int(rng.integers(1, 9))
        features = np.column_stack([rng.normal(3.0, 2.0, length), np.full(length, 0.5)])
        records.append({"id": f"r{i}", "label": f"c{i % 3}", "features": features.tolist()})
    train = write_jsonl(tmp_path / "train.jsonl", records)
    prepared = prepare_data(DataConfig(train_data=train, eval_fraction=0.25), str(tmp_path / "m"), seed=1)
    kept = set(split_ids(prepared, "train"))
    assert len(kept) == 30 and prepared.splits["eval"].num_records == 10
    kept_records = [r for r in records if r["id"] in kept]
    steps = np.concatenate([np.array(r["features"], np.float32) for r in kept_records]).astype(np.float64)
    spec = prepared.spec
    np.testing.assert_allclose(spec.feature_mean, steps.mean(axis=0), rtol=1e-12)
    assert spec.feature_std[0] == pytest.approx(steps[:, 0].std(), rel=1e-12)
    assert spec.feature_std[1] == 1.0  # constant in both parts
    assert spec.num_train_examples == 30
    assert spec.label_counts == tuple(sum(r["label"] == c for r in kept_records) for c in ("c0", "c1", "c2"))
    lengths = [len(r["features"]) for r in kept_records]
    assert spec.length_quantiles == tuple(int(v) for v in np.percentile(lengths, range(0, 101, 10),
                                                                      method="nearest"))

    text_rows = [[f"common w{i}", "a" if i else "only_held_out"] for i in range(40)]
    text = write_csv(tmp_path / "text.csv", ["text", "label"], text_rows)
    prepared = prepare_data(DataConfig(train_data=text, eval_fraction=0.25), str(tmp_path / "t"), seed=0)
    kept = {int(i.rsplit(":", 1)[1]) - 2 for i in split_ids(prepared, "train")}  # id: file:line
    assert 0 not in kept  # seed 0 holds out record 0, the only "only_held_out" (and w0)
    spec = prepared.spec
    assert spec.labels == ("a", "only_held_out") and spec.label_counts == (30, 0)
    assert set(spec.vocab) == {"common"} | {f"w{i}" for i in kept}


def test_text_input_vocab_labels_and_shards(tmp_path):
    rows = [["The cat sat.", "b"], ["the dog", "a"], ["A cat!", "10"], ["cat", "2"]] * 3
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    config = DataConfig(train_data=train, eval_fraction=0.0)
    prepared = prepare_data(config, str(tmp_path / "m"), seed=0, records_per_shard=5)
    spec = prepared.spec
    assert (spec.input_kind, spec.lowercase) == ("text", True)
    # cat x9, the x6, "." "!" a dog sat x3: count desc, then token
    assert spec.vocab == ("cat", "the", "!", ".", "a", "dog", "sat")
    assert spec.labels == ("10", "2", "a", "b")  # not all integers: plain string sort
    assert len(prepared.splits["train"].files) == 3 and "eval" not in prepared.splits
    with tf.io.gfile.GFile(str(tmp_path / "m" / "assets" / "vocab.txt")) as f:
        assert f.read().split("\n")[:2] == ["cat", "the"]


def test_labels_sorted_by_value_or_given_explicitly(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl",
                        [{"tokens": ["a"], "label": v} for v in (10, 2, 1, 2)])
    assert prepare_data(DataConfig(train_data=train, eval_fraction=0),
                        str(tmp_path / "m1"), 0).spec.labels == ("1", "2", "10")
    explicit = prepare_data(DataConfig(train_data=train, eval_fraction=0, labels="10,1,2,99"),
                            str(tmp_path / "m2"), 0).spec
    assert explicit.labels == ("10", "1", "2", "99") and explicit.label_counts == (1, 1, 2, 0)


def test_prediction_files_may_omit_targets(tmp_path, bundled):
    _, prepared = bundled
    predict = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "p1", "features": [[0.0] * 12] * 3}, {"id": "p2", "features": [[1.0] * 12]}])
    info = prepare_files(predict, prepared.spec, DataConfig(), str(tmp_path / "out"))
    assert info.num_records == 2 and not info.has_targets
    batch = next(iter(make_dataset(info.files, prepared.spec, DataConfig(), training=False,
                                   seed=0, with_targets=False)))
    assert set(batch) == {"features", "lengths", "weight", "id"}
    assert batch["lengths"].numpy().tolist() == [3, 1]


def test_ram_filesystem_end_to_end():
    train = write_jsonl("ram://e2e/src/train.jsonl.gz", dense_records(10))
    prepared = prepare_data(DataConfig(train_data=train, eval_fraction=0.1), "ram://e2e/model", seed=1)
    assert prepared.splits["train"].files[0].startswith("ram://e2e/model/prepared/")
    assert DataSpec.load("ram://e2e/model") == prepared.spec
    ids = split_ids(prepared, "train") + split_ids(prepared, "eval")
    assert sorted(ids) == sorted(f"r{i}" for i in range(10))
    assert prepare_data(DataConfig(train_data=train, eval_fraction=0.1), "ram://e2e/model", seed=1).reused


def test_spec_round_trip_with_vocabulary(tmp_path):
    spec = DataSpec(input_kind="tokens", target_kind="tags", labels=("B", "I", "O"),
                    vocab=("x", "y z", "ü"), num_oov_buckets=2, label_counts=(1, 2, 3),
                    num_train_examples=4, length_quantiles=tuple(range(11)), max_length=9)
    spec.save(str(tmp_path))
    assert DataSpec.load(str(tmp_path)) == spec
    assert DataSpec.load(str(tmp_path / "nothing")) is None


def test_auto_eval_fraction_holds_out_only_from_sets_large_enough(tmp_path):
    from data.config import AUTO_EVAL_MIN_RECORDS

    small = write_jsonl(tmp_path / "small.jsonl", dense_records(40))
    prepared = prepare_data(DataConfig(train_data=small), str(tmp_path / "s"), seed=0)
    assert DataConfig().eval_fraction == -1.0
    assert "eval" not in prepared.splits and prepared.splits["train"].num_records == 40
    large = write_jsonl(tmp_path / "large.jsonl", dense_records(AUTO_EVAL_MIN_RECORDS))
    prepared = prepare_data(DataConfig(train_data=large), str(tmp_path / "l"), seed=0)
    assert prepared.splits["eval"].num_records == AUTO_EVAL_MIN_RECORDS // 10
    assert prepared.splits["train"].num_records == AUTO_EVAL_MIN_RECORDS * 9 // 10
    with pytest.raises(ValueError, match="eval_fraction"):
        DataConfig(eval_fraction=-0.5)
