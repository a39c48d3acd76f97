"""Cheap proxies of a pruned model's accuracy after its brief fine-tune, for ranking many plans before any fine-tune.

Accuracy right after pruning ranks plans badly: removing channels shifts every later BatchNorm layer's input
statistics, so a pruned network reads near chance until its running statistics are re-estimated. EagleEye (ECCV
2020) re-estimates them from a few hundred training images with no gradient ("adaptive BN") and finds the accuracy
after it correlates far better with the accuracy after fine-tuning. That holds where pruning leaves each layer's
features usable (the bench's ResNet-8: Spearman 0.94 over 16 random cheap plans) but not where it cuts the
expansion layers of MobileNetV2-style blocks (0.59): there the pruned network needs a few gradient steps before
its accuracy says anything. The default proxy, ``finetune``, is a few steps of the brief fine-tune followed by the
recalibration (the running statistics kept during the steps mix the network's states along the way): 0.94 and 0.80
on those tasks, for 0.2-1 s a plan (``bench/search_quality.py`` measures all three). Models without BatchNorm
(LayerNorm Transformers) get the steps alone. A proxy ranks plans; it is stored as ``accuracy_proxy`` with its
method and never reported as accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import Split
from .loop import evaluate, train

PROXY_METHODS = ("adaptive_bn", "finetune", "none")


@dataclass(frozen=True)
class Proxy:
    accuracy: float  # on the validation split, after the proxy's recalibration
    method: str  # adaptive_bn | finetune | none (the method actually used: adaptive_bn falls back to finetune)
    batches: int  # training batches it used (steps and recalibration together)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adaptive_bn(model: nn.Module, split: Split, *, batches: int, batch_size: int, seed: int) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance from ``batches`` training batches, in place.

    Only the BatchNorm layers run in training mode (dropout stays off, so the statistics are those of the network
    that will be evaluated); ``momentum=None`` makes each layer's estimate the plain average over the batches, and
    the layers' momentum is restored afterwards (left at None, a later fine-tune would average over all its steps
    and keep stale statistics). Returns the number of batches used.
    """
    norms = batch_norms(model)
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    used = 0
    generator = torch.Generator().manual_seed(seed)
    try:
        while used < batches:
            before = used
            for x, _ in split.batches(batch_size, shuffle=True, generator=generator):
                model(x)
                used += 1
                if used == batches:
                    break
            if used == before:  # an empty split
                break
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return used


def proxy_accuracy(model: nn.Module, train_split: Split, val_split: Split, *, method: str, batches: int,
                   batch_size: int, seed: int, lr: float, optimizer: str) -> Proxy:
    """The proxy of ``method`` for ``model`` (changed in place: pass a copy if it is fine-tuned afterwards).

    ``finetune``: ``batches`` steps of the brief fine-tune's optimizer at its learning rate, then, on a model with
    BatchNorm, adaptive BN over ``batches`` batches. ``adaptive_bn``: the recalibration alone (on a model without
    BatchNorm it falls back to ``finetune``). ``none``: the accuracy right after pruning.
    """
    if method not in PROXY_METHODS:
        raise ValueError(f"unknown proxy {method!r}; choose from {', '.join(PROXY_METHODS)}")
    used = 0
    if method == "adaptive_bn" and not batch_norms(model):
        method = "finetune"
    if method == "adaptive_bn":
        used = adaptive_bn(model, train_split, batches=batches, batch_size=batch_size, seed=seed)
    elif method == "finetune":
        train(model, train_split, steps=batches, lr=lr, batch_size=batch_size, optimizer=optimizer, seed=seed)
        used = batches + adaptive_bn(model, train_split, batches=batches, batch_size=batch_size, seed=seed + 1)
    return Proxy(evaluate(model, val_split), method, used)
