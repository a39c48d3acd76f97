"""Hugging Face ``transformers`` classifiers as plain modules: token ids (or images) in, logits out.

``hf:<name>`` loads a pretrained model from the hub (or its local cache) with a fresh classification head of the
data set's classes; ``hf-config:<config.json>`` builds a randomly initialised one from a config, as
``transformers`` offers, which is how the offline tests and small studies get a BERT-style encoder. Either is
wrapped in ``HFClassifier`` so that the rest of moprune (fine-tune, evaluation, timing, MAC counting, export) sees
what it sees for a torchvision model: ``model(x)`` returns a logits tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MopruneError, SpecError

VISION_TYPES = ("vit", "deit", "swin", "beit", "dinov2", "convnext")  # model types read as image classifiers


class HFClassifier(nn.Module):
    """A ``transformers`` classifier that returns logits; for text, the attention mask comes from the pad id."""

    def __init__(self, model: nn.Module, pad_id: int | None):
        super().__init__()
        self.model, self.pad_id = model, pad_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_id is None:  # an image classifier
            return self.model(pixel_values=x).logits
        return self.model(input_ids=x, attention_mask=(x != self.pad_id).long()).logits


def _config(arch: str, num_classes: int, text: dict[str, Any] | None, data: dict[str, Any] | None) -> Any:
    from transformers import AutoConfig

    source = arch.partition(":")[2]
    path = Path(source)
    try:
        if data is not None:  # an export's own copy: nothing to read from the hub or the study's files
            return AutoConfig.for_model(**data)
        if arch.startswith("hf-config:"):
            data = json.loads((path / "config.json" if path.is_dir() else path).read_text())
            config = AutoConfig.for_model(**data)
        else:
            config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise SpecError(f"model.arch: cannot read the Hugging Face config of {arch!r} ({exc})") from None
    config.num_labels = num_classes
    if text is not None and arch.startswith("hf-config:"):
        config.vocab_size = text["vocab_size"]  # a config built for a tokenizer moprune trained
        config.pad_token_id = text["pad_id"]
        config.max_position_embeddings = max(getattr(config, "max_position_embeddings", 0), text["max_length"])
    return config


def build_hf(arch: str, num_classes: int, text: dict[str, Any] | None,
             config_data: dict[str, Any] | None = None) -> nn.Module:
    """The ``hf:`` or ``hf-config:`` model, wrapped; randomly initialised for ``hf-config:``, and for any arch
    when ``config_data`` (an export's ``hf_config``: the model's full config) is given, since its weights follow."""
    import transformers

    config = _config(arch, num_classes, text, config_data)
    vision = config.model_type in VISION_TYPES
    auto = transformers.AutoModelForImageClassification if vision else transformers.AutoModelForSequenceClassification
    if vision == (text is not None):
        raise SpecError(f"model.arch: {arch} is a{' vision' if vision else ' text'} model; the data set gives "
                        f"{'token ids' if text is not None else 'images'}")
    try:
        if arch.startswith("hf-config:") or config_data is not None:
            model = auto.from_config(config, attn_implementation="sdpa")
        else:
            model = auto.from_pretrained(arch.partition(":")[2], config=config, ignore_mismatched_sizes=True,
                                         attn_implementation="sdpa")
    except OSError as exc:  # no network and not in the cache
        raise MopruneError(f"model.arch: cannot load {arch!r} ({exc}); on a machine without internet, download "
                           "it once elsewhere into the Hugging Face cache, or use model.checkpoint") from None
    pad = None if text is None else text["pad_id"]
    return HFClassifier(model, pad)


def hf_config_of(model: nn.Module) -> dict[str, Any] | None:
    """The full config of a wrapped Hugging Face model (JSON-able), for an export to rebuild it offline."""
    if isinstance(model, HFClassifier):
        return json.loads(model.model.config.to_json_string(use_diff=False))
    return None
