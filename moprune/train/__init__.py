"""Training: data sets as tensors on the device, dense models (torchvision, user factories, checkpoints, a cached
pretraining), and the one loop for pretraining and brief fine-tunes, with top-1 evaluation.

Knows nothing of pruning or studies.
"""

from .data import FAKE_SIZE, Batch, DataBundle, LoaderSplit, Split, TensorSplit, load_data
from .split import stratified_split
from .loop import (Distillation, NonFiniteLoss, TrainResult, cosine_lr, distillation_loss, evaluate, make_optimizer,
                   train)
from .hf import HFClassifier, hf_config_of
from .models import (CACHE_DIR, DenseModel, build_model, dense_weights_path, file_sha256, load_checkpoint, load_dense,
                     pretrain_key)

__all__ = ["HFClassifier", "hf_config_of", "Batch", "CACHE_DIR", "DataBundle", "DenseModel", "Distillation", "distillation_loss", "FAKE_SIZE", "LoaderSplit", "NonFiniteLoss", "Split",
           "TensorSplit", "TrainResult", "build_model", "cosine_lr", "dense_weights_path", "evaluate", "file_sha256",
           "load_checkpoint", "load_data", "load_dense", "make_optimizer", "pretrain_key", "stratified_split",
           "train"]
