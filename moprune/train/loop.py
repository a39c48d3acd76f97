"""One training loop for pretraining the dense model and for each trial's brief fine-tune, and top-1 evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrialFailed
from ..torch_state import seeded
from .data import Split


class NonFiniteLoss(TrialFailed):
    """The loss became NaN or infinite; the fine-tune stops and the trial fails with this reason."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float
    seconds: float


@dataclass(frozen=True)
class Distillation:
    """A teacher for the fine-tune: the loss mixes cross-entropy with the KL divergence to its softened logits."""

    teacher: nn.Module  # kept in eval mode; never updated
    alpha: float  # weight of the KL term
    temperature: float


def batch_norm_scales(model: nn.Module) -> list[torch.Tensor]:
    """The scale (gamma) of every affine BatchNorm: what network slimming's L1 acts on."""
    return [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                      temperature: float) -> torch.Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al., 2015)."""
    hard = F.cross_entropy(student, labels)
    if alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                    log_target=True) * (t * t)
    return (1.0 - alpha) * hard + alpha * soft


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    raise ValueError(f"unknown optimizer {name!r}")


def cosine_lr(step: int, total: int, base_lr: float, warmup: int = 0) -> float:
    """Linear warm-up, then cosine decay to zero: robust for both 5-epoch pretraining and 100-step fine-tunes."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))


def train(model: nn.Module, split: Split, *, steps: int, lr: float, batch_size: int, optimizer: str = "sgd",
          seed: int, warmup: int = 0, distill: Distillation | None = None, l1_bn: float = 0.0,
          after_step: Callable[[], None] | None = None) -> TrainResult:
    """Train ``model`` in place for ``steps`` optimizer steps over shuffled epochs of ``split``.

    The data order and the random draws inside the model (dropout) come from ``seed`` alone (torch's global RNG is
    seeded for the loop and the caller's state restored after it), so on the CPU a fine-tune is reproducible bit for
    bit and can be re-run on fresh seeds. On a GPU, cuDNN and atomics may pick nondeterministic kernels: the same
    seed gives the same data and dropout but accuracies that can differ in the last digits.
    With ``distill`` each step also runs the teacher on the same batch (no gradient) and mixes its soft targets in.
    ``l1_bn`` adds ``l1_bn * |gamma|`` of every BatchNorm scale to the loss (its subgradient, as network slimming
    does), pushing the scales of unneeded channels to zero. ``after_step`` runs after every optimizer step (sparsity
    masks are held there).
    """
    start = time.perf_counter()
    if steps == 0:
        return TrainResult(0, float("nan"), 0.0)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with seeded(seed, device):
        return _train(model, split, steps=steps, lr=lr, batch_size=batch_size, optimizer=optimizer, seed=seed,
                      warmup=warmup, distill=distill, l1_bn=l1_bn, after_step=after_step, start=start)


def _train(model: nn.Module, split: Split, *, steps: int, lr: float, batch_size: int, optimizer: str, seed: int,
           warmup: int, distill: Distillation | None, l1_bn: float, after_step: Callable[[], None] | None,
           start: float) -> TrainResult:
    opt = make_optimizer(optimizer, model.parameters(), lr)
    scales = batch_norm_scales(model) if l1_bn else []
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    if distill is not None:
        distill.teacher.eval()
    model.train()
    step, loss_value = 0, float("nan")
    while step < steps:
        for x, y in split.batches(batch_size, shuffle=True, generator=generator):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, warmup)
            if distill is None:
                loss = loss_fn(model(x), y)
            else:
                with torch.no_grad():
                    soft = distill.teacher(x)
                loss = distillation_loss(model(x), soft, y, distill.alpha, distill.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for gamma in scales:
                if gamma.grad is not None:
                    gamma.grad.add_(torch.sign(gamma.detach()), alpha=l1_bn)
            opt.step()
            if after_step is not None:
                after_step()
            step += 1
            if step == steps or step % 25 == 0:
                loss_value = float(loss.detach())  # a device sync: only every 25 steps
                if not math.isfinite(loss_value):
                    raise NonFiniteLoss(f"non-finite loss ({loss_value}) at fine-tune step {step}")
            if step == steps:
                break
    model.eval()
    return TrainResult(steps, loss_value, time.perf_counter() - start)


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, *, batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction 0..1) on ``split``, in eval mode."""
    model.eval()
    correct = total = 0
    for x, y in split.batches(batch_size):
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total
