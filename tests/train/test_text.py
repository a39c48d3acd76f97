"""Text classification data: local files tokenised once into fixed-length id tensors, and BERT-style models on them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from moprune.errors import MopruneError, SpecError
from moprune.measure import count_complexity
from moprune.pruning import apply_plan, discover_groups
from moprune.spec import DataSpec, parse_spec
from moprune.train import build_model, load_data

CPU = torch.device("cpu")
DATA = Path(__file__).parents[1] / "data"
REVIEWS = DATA / "reviews.csv"
TINY_BERT = DATA / "tiny_bert.json"


def reviews(**kw) -> DataSpec:
    return DataSpec(name="text", path=REVIEWS, max_length=24, vocab_size=500, **kw)


def test_a_csv_becomes_fixed_length_token_ids_with_a_tokenizer_trained_on_the_training_split():
    data = load_data(reviews(), seed=0, device=CPU)
    x, y = next(data.train.batches(16))
    assert x.shape == (16, 24) and x.dtype == torch.long and y.dtype == torch.long
    assert data.num_classes == 2 and len(data.train) + len(data.val) == 1200
    assert data.text["max_length"] == 24 and data.text["pad_id"] == 0
    assert int(data.train.x.max()) < data.text["vocab_size"]
    assert Path(data.text["tokenizer"]).is_file(), "the trained tokenizer is saved for the export"
    assert (data.train.x[:, 0] == data.train.x[0, 0]).all(), "every sequence starts with [CLS]"
    again = load_data(reviews(), seed=0, device=CPU)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.val.y, data.val.y)


def test_json_lines_and_an_explicit_validation_file_read_the_same_texts(tmp_path):
    frame = pd.read_csv(REVIEWS)
    frame.iloc[:1000].to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    frame.iloc[1000:].to_json(tmp_path / "val.jsonl", orient="records", lines=True)
    data = load_data(DataSpec(name="text", path=tmp_path / "train.jsonl", val_path=tmp_path / "val.jsonl",
                              max_length=16), seed=0, device=CPU)
    assert (len(data.train), len(data.val)) == (1000, 200)
    expected = torch.tensor((frame.iloc[1000:]["label"] == "positive").astype(int).to_numpy())
    assert torch.equal(data.val.y, expected), "labels are the sorted label values' indices (negative 0, positive 1)"


def test_a_missing_column_names_the_key_and_the_columns_there(tmp_path):
    with pytest.raises(SpecError, match=r"data.text_column: .* has no column 'review' \(columns: text, label\)"):
        load_data(reviews(text_column="review"), seed=0, device=CPU)


def test_text_data_needs_a_text_model_and_a_file():
    with pytest.raises(SpecError, match="data.name text gives token ids, which resnet18 .* cannot read"):
        parse_spec({"data": {"name": "text", "path": str(REVIEWS)}})
    with pytest.raises(SpecError, match="data.name text reads a local file: set data.path"):
        parse_spec({"model": {"arch": f"hf-config:{TINY_BERT}"}, "data": {"name": "text"}})


def test_hf_arch_without_transformers_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(SpecError, match=r"model.arch 'hf:bert-base-uncased' needs the Hugging Face extra "
                                        r"\(transformers is not installed\): pip install 'moprune\[hf\]'"):
        parse_spec({"model": {"arch": "hf:bert-base-uncased"}})


def test_a_bert_from_a_config_reads_token_ids_and_prunes_by_head_and_neuron():
    data = load_data(reviews(), seed=0, device=CPU)
    model = build_model(f"hf-config:{TINY_BERT}", data.num_classes, text=data.text).eval()
    x = data.example_inputs(4)
    assert model(x).shape == (4, 2)
    groups = discover_groups(model, x[:1])
    assert [(g.kind, g.channels) for g in groups] == [("heads", 4), ("neurons", 256)] * 2
    pruned = apply_plan(model, {g.root: 0.5 for g in groups}, x[:1])
    attention = pruned.model.get_submodule(groups[0].root)
    assert (attention.num_attention_heads, attention.all_head_size, attention.query.out_features) == (2, 32, 32)
    assert pruned.model(x).shape == (4, 2)
    assert count_complexity(pruned.model, x).macs < 0.6 * count_complexity(model, x).macs


def test_a_padded_token_does_not_change_the_prediction():
    data = load_data(reviews(), seed=0, device=CPU)
    model = build_model(f"hf-config:{TINY_BERT}", data.num_classes, text=data.text).eval()
    x = data.example_inputs(1)
    length = int((x[0] != data.text["pad_id"]).sum())
    assert length < x.shape[1], "this review is shorter than max_length: the rest is padding"
    torch.testing.assert_close(model(x), model(x[:, :length]), rtol=1e-4, atol=1e-5)
    with pytest.raises(MopruneError, match="cannot read"):
        build_model("hf-config:/nonexistent/config.json", 2, text=data.text)


def test_a_hugging_face_dataset_loads_offline_from_local_files_like_the_text_reader():
    pytest.importorskip("datasets")
    via_hf = load_data(DataSpec(name="hf", dataset="csv", data_files=str(REVIEWS), max_length=24, vocab_size=500),
                       seed=0, device=CPU)
    direct = load_data(reviews(), seed=0, device=CPU)
    assert torch.equal(via_hf.train.x, direct.train.x) and torch.equal(via_hf.val.y, direct.val.y)
