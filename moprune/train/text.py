"""Text classification data: a local file or a Hugging Face dataset, tokenised once into token-id tensors.

Like the digits, a text data set becomes two ``TensorSplit``s on the device: ``(N, max_length)`` int64 token ids
(padded or cut to ``data.max_length``, so latency is measured at one sequence length) and their labels. The
tokenizer is a pretrained one by name (``transformers.AutoTokenizer``, for ``hf:`` models) or, with
``data.tokenizer: train``, a WordPiece tokenizer the ``tokenizers`` library trains on the training split only
(deterministic for the same texts), saved beside the pretrain cache so an export can ship it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MopruneError, SpecError
from ..spec import DataSpec
from .split import stratified_split

log = logging.getLogger(__name__)

TOKENIZER_DIR = Path("runs/cache")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Tokenised:
    """Token ids ``(N, max_length)``, labels, and what a model needs to read them."""

    ids: np.ndarray
    labels: np.ndarray
    vocab_size: int
    pad_id: int
    tokenizer_path: Path | None  # a trained tokenizer's file (None: a pretrained tokenizer by name)


def read_table(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[Any]]:
    """Texts and labels of a CSV, JSON Lines or Parquet file, by column name."""
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.is_file():
        raise SpecError(f"data.path: no such file {str(path)!r}")
    try:
        if suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=suffix == ".jsonl")
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise SpecError(f"data.path: {path.name} is not .csv, .tsv, .jsonl, .json or .parquet")
    except (ValueError, ImportError) as exc:
        raise MopruneError(f"data.path: cannot read {str(path)!r} ({exc})") from None
    for key, column in (("data.text_column", text_column), ("data.label_column", label_column)):
        if column not in frame.columns:
            raise SpecError(f"{key}: {str(path)!r} has no column {column!r} (columns: {', '.join(map(str, frame.columns))})")
    return frame[text_column].astype(str).tolist(), frame[label_column].tolist()


def hf_table(spec: DataSpec, split: str) -> tuple[list[str], list[Any]]:
    """Texts and labels of a Hugging Face dataset split (downloaded, or from the local cache)."""
    import datasets

    try:
        table = datasets.load_dataset(spec.dataset, spec.dataset_config, split=split,
                                      **({"data_files": spec.data_files} if spec.data_files else {}))
    except Exception as exc:  # no network, unknown name or split: one line, the cause
        raise MopruneError(f"data.dataset: cannot load {spec.dataset!r} split {split!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for key, column in (("data.text_column", spec.text_column), ("data.label_column", spec.label_column)):
        if column not in table.column_names:
            raise SpecError(f"{key}: {spec.dataset} has no column {column!r} (columns: {', '.join(table.column_names)})")
    return [str(t) for t in table[spec.text_column]], list(table[spec.label_column])


def label_ids(train: list[Any], val: list[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels as class indices 0..K-1 (sorted label values), for both splits; K."""
    classes = sorted(set(train) | set(val), key=str)
    index = {c: i for i, c in enumerate(classes)}
    return (np.array([index[c] for c in train], dtype=np.int64), np.array([index[c] for c in val], dtype=np.int64),
            len(classes))


def _trained_tokenizer(texts: list[str], spec: DataSpec) -> tuple[Any, Path]:
    """A WordPiece tokenizer trained on ``texts`` (cached by their content and the vocabulary size)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = TOKENIZER_DIR / f"tokenizer-{digest}-{spec.vocab_size}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path)), path
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=spec.vocab_size,
                                                                    special_tokens=list(SPECIAL)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    log.info("trained a WordPiece tokenizer of %d tokens on %d training texts; saved as %s",
             tokenizer.get_vocab_size(), len(texts), path)
    return tokenizer, path


def _encode_trained(tokenizer: Any, texts: list[str], max_length: int) -> np.ndarray:
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    out = np.full((len(texts), max_length), pad_id, dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        ids = [cls_id, *encoding.ids[:max_length - 2], sep_id]
        out[row, :len(ids)] = ids
    return out


def tokenise(train_texts: list[str], val_texts: list[str], spec: DataSpec) -> tuple[np.ndarray, np.ndarray, int, int,
                                                                                      Path | None]:
    """Token ids of both splits, the vocabulary size, the padding id and the trained tokenizer's file."""
    if spec.tokenizer == "train":
        tokenizer, path = _trained_tokenizer(train_texts, spec)
        return (_encode_trained(tokenizer, train_texts, spec.max_length),
                _encode_trained(tokenizer, val_texts, spec.max_length), tokenizer.get_vocab_size(),
                tokenizer.token_to_id("[PAD]"), path)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    except Exception as exc:
        raise MopruneError(f"data.tokenizer: cannot load {spec.tokenizer!r} ({type(exc).__name__}); a name on the "
                           "Hugging Face hub, a local folder, or train") from None

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(tokenizer(texts, padding="max_length", truncation=True, max_length=spec.max_length)
                          ["input_ids"], dtype=np.int64)
    return encode(train_texts), encode(val_texts), len(tokenizer), int(tokenizer.pad_token_id or 0), None


def text_tensors(spec: DataSpec, seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor,
                                                                                              torch.Tensor], int,
                                                    dict[str, Any]]:
    """(train ids, labels), (val ids, labels), the number of classes, and the text facts the model needs."""

    if spec.name == "text":
        texts, labels = read_table(Path(spec.path), spec.text_column, spec.label_column)  # type: ignore[arg-type]
        if spec.val_path is not None:
            val_texts, val_labels = read_table(Path(spec.val_path), spec.text_column, spec.label_column)
        else:
            texts, labels, val_texts, val_labels = _split(texts, labels, spec.val_fraction, seed, stratified_split)
    else:
        texts, labels = hf_table(spec, spec.train_split)
        if spec.val_split is not None:
            val_texts, val_labels = hf_table(spec, spec.val_split)
        else:
            texts, labels, val_texts, val_labels = _split(texts, labels, spec.val_fraction, seed, stratified_split)
    y_train, y_val, classes = label_ids(labels, val_labels)
    x_train, x_val, vocab, pad, path = tokenise(texts, val_texts, spec)
    facts = {"vocab_size": vocab, "pad_id": pad, "max_length": spec.max_length,
             "tokenizer": str(path) if path is not None else spec.tokenizer}
    return ((torch.from_numpy(x_train), torch.from_numpy(y_train)), (torch.from_numpy(x_val), torch.from_numpy(y_val)),
            classes, facts)


def _split(texts: list[str], labels: list[Any], fraction: float, seed: int, splitter: Any
           ) -> tuple[list[str], list[Any], list[str], list[Any]]:
    codes = np.array([str(v) for v in labels])
    train_idx, val_idx = splitter(codes, fraction, seed)
    return ([texts[i] for i in train_idx], [labels[i] for i in train_idx], [texts[i] for i in val_idx],
            [labels[i] for i in val_idx])
