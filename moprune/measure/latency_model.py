"""A latency model calibrated on the plans this study measured: it decides which screened plans to measure.

Timing a plan, even with the quick screen measurement, costs more than its proxy on small models (on the bench's
ResNet-8 most of a screened plan's 0.5 s), so a screen that times every plan sees few plans. The model predicts a
plan's latency from what the forward pass does, counted in one traced pass: the MACs of dense convolutions and
Linear layers, the MACs of depthwise convolutions (memory-bound on CPUs and GPUs alike: a MAC costs several times
more), the elements every leaf module writes (the memory traffic of the normalisations, activations and
additions between them), and the leaf modules run (each launches its kernels whatever its width: this fixed cost is
why plans keeping 2-8% of a ResNet-20's MACs ran only 2.4-3.5x faster than dense on one CPU thread, and what a plan
that drops a residual block saves). Its coefficients are non-negative least squares (scikit-learn) over the study's own
paired measurements, so it learns the device and runtime. It predicts only plans like those it was fitted on
(``LatencyModel.covers``: at least ``MIN_POINTS`` measured, every feature within their range give or take a tenth of
it); the screen times the others (``moprune.search.screen``). A prediction is stored as ``latency_predicted_ms`` on
screened plans only, and never shown as a measurement: every plan that is promoted is measured precisely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..torch_state import hooked_pass

FEATURES = ("macs", "macs_depthwise", "activations", "layers")

#: Measured plans (the dense model among them) before the model predicts anything: five coefficients are fitted.
MIN_POINTS = 5

#: How far outside the measured plans' range (a share of the range, per feature) a prediction is still trusted.
REACH = 0.1


def cost_features(model: nn.Module, example_inputs: torch.Tensor) -> tuple[float, ...]:
    """``FEATURES`` of one sample's forward pass, counted by hooks on the leaf modules (in ``FEATURES`` order)."""
    one = example_inputs[:1]
    totals = dict.fromkeys(FEATURES, 0.0)

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        if not isinstance(out, torch.Tensor):
            return
        totals["activations"] += out.numel()
        totals["layers"] += 1
        if isinstance(module, nn.Conv2d | nn.Conv1d):
            per_out = (module.in_channels // module.groups) * math.prod(module.kernel_size)
            kind = "macs_depthwise" if module.groups > 1 and module.groups == module.in_channels else "macs"
            totals[kind] += out.numel() * per_out
        elif isinstance(module, nn.Linear):
            totals["macs"] += out.numel() * module.in_features

    # an Identity (a dropped block's stand-in) moves no data and launches nothing
    leaves = [m for m in model.modules() if not any(True for _ in m.children()) and not isinstance(m, nn.Identity)]
    hooked_pass(model, one, lambda: [m.register_forward_hook(hook) for m in leaves])
    return tuple(totals[name] for name in FEATURES)


@dataclass(frozen=True)
class LatencyModel:
    """latency_ms = intercept + sum(coefficient * feature); ``points`` measured plans fitted it."""

    intercept: float
    coefficients: tuple[float, ...]
    points: int
    loo_error: float | None  # median relative error, each measured plan predicted by a fit without it
    # each feature's lowest and highest value over the measured plans: outside them the fit is an extrapolation
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    def covers(self, features: tuple[float, ...]) -> bool:
        """Whether the model may predict a plan with ``features``: fitted on ``MIN_POINTS`` or more measured plans,
        and every feature within their range give or take ``REACH`` of it.

        Outside, a linear fit extrapolates. Before this check the screen predicted its first rounds from the dense
        latency scaled by MACs (fewer than 3 plans measured): on the bench's ResNet-20 (``--quick`` seed 4,
        2026-12-05) it read the uniform and global 0.44 plans at 4.7 ms (measured 10.5-11.0 ms, 1.3x) and both were
        fine-tuned for a speed they did not have; and a fit on plans that drop no block cannot tell what dropping
        one saves (its ``layers`` coefficient and the intercept trade freely).
        """
        if self.points < MIN_POINTS or len(self.low) != len(features):
            return False
        return all(lo - REACH * (hi - lo) <= f <= hi + REACH * (hi - lo)
                   for f, lo, hi in zip(features, self.low, self.high))

    def predict(self, features: tuple[float, ...]) -> float:
        return self.intercept + sum(c * f for c, f in zip(self.coefficients, features))

    def describe(self) -> str:
        if self.points < MIN_POINTS:
            return f"not fitted yet ({self.points} plan(s) measured; {MIN_POINTS} fit it): plans are timed"
        error = "" if self.loo_error is None else f", leave-one-out median error {self.loo_error:.1%}"
        return f"fitted on {self.points} measured plans{error}"


def _fit(xs: list[tuple[float, ...]], ys: list[float]) -> tuple[float, tuple[float, ...]]:
    """Least squares with every coefficient and the intercept non-negative, the intercept as a column of ones.

    Fitting the intercept freely and clipping it at zero afterwards, as this did until 2026-12-05, moved every
    prediction up by what was clipped: on the bench's ResNet-20 (full budget, seed 0) the fit over 8 measured plans
    gave an intercept of about -7 ms, clipped to 0, and from then on predicted the dense model at 22.4 ms (measured
    15.1) and a 4x plan at 1.4x (leave-one-out error 54%), so the screen saw no gain in its fastest plans.
    """
    import numpy as np
    from sklearn.linear_model import LinearRegression

    x = np.asarray(xs, dtype=float)
    scale = np.where(x.max(axis=0) > 0, x.max(axis=0), 1.0)  # a positive scale keeps the coefficients' signs
    ones = np.ones((len(x), 1))
    reg = LinearRegression(positive=True, fit_intercept=False).fit(np.hstack([ones, x / scale]),
                                                                  np.asarray(ys, dtype=float))
    return float(reg.coef_[0]), tuple(float(c) for c in reg.coef_[1:] / scale)


def fit_latency_model(xs: list[tuple[float, ...]], ys: list[float], *, dense: tuple[tuple[float, ...], float]
                      ) -> LatencyModel:
    """A model from measured plans (``xs`` their features, ``ys`` their latencies in ms, the dense model among
    them); ``dense`` the dense model's (features, latency), used alone, as latency proportional to MACs, while fewer
    than ``MIN_POINTS`` plans are known (such a model ``covers`` nothing: the screen times every plan)."""
    points = len(xs)
    if points < MIN_POINTS:
        features, latency = dense
        per_mac = latency / features[0] if features[0] else 0.0
        return LatencyModel(0.0, (per_mac, *(0.0 for _ in FEATURES[1:])), points, None)
    intercept, coefficients = _fit(xs, ys)
    errors = []
    for i in range(points):
        b, c = _fit(xs[:i] + xs[i + 1:], ys[:i] + ys[i + 1:])
        predicted = b + sum(k * f for k, f in zip(c, xs[i]))
        errors.append(abs(predicted - ys[i]) / ys[i])
    loo = sorted(errors)[len(errors) // 2] if errors else None
    columns = list(zip(*xs))
    return LatencyModel(intercept, coefficients, points, loo, low=tuple(min(c) for c in columns),
                        high=tuple(max(c) for c in columns))
