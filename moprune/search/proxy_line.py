"""The line from a screened plan's proxy to its accuracy after the fine-tune, as ``ProxyCalibration`` fits it.

On the log-odds scale of both, its slope shrunk toward 1, each plan weighed by how far it may scatter (the
fine-tune's own scatter, even in accuracy units, and the proxy's), bent below the proxies it was fitted on so that it
falls at least as steeply as the proxy, with a shift per dropped block. A prediction that steers promotion and the
proposals (``moprune.search.promotion``, ``moprune.search.screen``), never a result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

#: Where accuracies and proxies are clipped before their log-odds are taken (1.0 and 0.0 have none).
_EDGE = 1e-3


def _bounded(p: float) -> float:
    return min(max(p, _EDGE), 1 - _EDGE)


def odds(p: float) -> float:
    """The log-odds of an accuracy or a proxy, clipped to [_EDGE, 1 - _EDGE]."""
    p = _bounded(p)
    return math.log(p / (1 - p))


def probability(z: float) -> float:
    """The inverse of ``odds``."""
    return 1.0 / (1.0 + math.exp(-z))


def _transforms(logit: bool) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """(to the line's scale, back to accuracy or proxy units): log-odds when ``logit``, else unchanged."""
    return (odds, probability) if logit else (float, float)


@dataclass(frozen=True)
class ProxyLine:
    """accuracy after the fine-tune ~ intercept + slope x proxy, on the log-odds scale of both when ``logit`` (as
    ``fit_line`` fits it), how far fine-tuned plans scatter about it (``scatter_at``), and the proxy at the accuracy
    ``budget`` (``proxy_floor``). A prediction that steers promotion, never a result."""

    slope: float
    intercept: float
    # how far a fine-tune's accuracy scatters (sd; a prior until 3 plans): on a log-odds line in accuracy units, as
    # it scatters about evenly there wherever it lands (``scatter_at``); on a straight line, on its scale
    spread: float
    floor: float  # in proxy units, whatever the scale
    budget: float
    # the highest proxy of a fine-tuned plan under the floor (every such plan missed the budget, or the floor would
    # be its proxy): between it and the floor the line is untested (``moprune.search.promotion.probe``); None when
    # no fine-tuned plan lies under the floor
    missed_below: float | None = None
    # proxy units each dropped block adds before the line is read (``fit_line``), and whether any fine-tuned plan
    # dropped a block: until one did, the shift is unknown, not zero (``moprune.search.promotion`` explores it)
    per_block: float = 0.0
    blocks_tried: bool = False
    # where the line was fitted, on its scale: the mean of the (shifted) proxies, their sum of squared deviations
    # plus the slope prior's, and how many plans; ``sd_at`` widens the spread with the distance from them
    mean_proxy: float | None = None
    sxx: float = 0.0
    points: int = 0
    # both sides on the log-odds scale (``fit_line``); False: a straight line in accuracy units, as one built by hand
    logit: bool = False
    # on a log-odds line, the sd the proxy's own noise adds on that scale wherever it reads (``PROXY_NOISE_ODDS``)
    proxy_noise: float = 0.0
    # on its scale, the lowest (shifted) proxy it was fitted on: below it the line falls at least as steeply as the
    # proxy (``bent``); None: straight throughout
    bend: float | None = None

    def _scale(self, value: float) -> float:
        return _transforms(self.logit)[0](value)

    def _unscale(self, value: float) -> float:
        return _transforms(self.logit)[1](value)

    def accuracy(self, proxy: float) -> float:
        """The line's reading at ``proxy``, no sd added."""
        return self._unscale(bent(self._scale(proxy), self.slope, self.intercept, self.bend))

    def reading(self, proxy: float, z: float) -> float:
        """The accuracy ``z`` of its sds (``sd_at``) above the line at ``proxy``: where a plan's fine-tune may land."""
        return self._unscale(bent(self._scale(proxy), self.slope, self.intercept, self.bend) + z * self.sd_at(proxy))

    def proxy_at(self, accuracy: float) -> float:
        """The proxy the line reads as ``accuracy``."""
        return self._unscale(unbent(self._scale(accuracy), self.slope, self.intercept, self.bend))

    @property
    def aim(self) -> float:
        """The proxy the line reads as the budget itself (``proxy_at(budget)``), never under the ``floor``: where the
        allocation model and the sampler propose plans (``moprune.search.screen``).

        The floor is an optimistic bound (the line plus one sd meets the budget there, or a plan that low met it),
        right for which plans promotion may still weigh, and too low to aim the proposals at: a plan there meets the
        budget about one time in six. Aimed at the floor, the bench's MobileNetV2 (``--quick``, seed 0, 2026-12-05)
        screened its own plans at proxies of 0.11-0.65 against a floor of 0.53-0.57, and seven of its eight searched
        fine-tunes missed the budget while the sampler without screening met it at 2.2-2.8x."""
        return max(self.proxy_at(self.budget), self.floor)

    def scatter_at(self, accuracy: float) -> float:
        """How far fine-tuned plans scatter about the line where it reads ``accuracy``, on the line's scale: on
        log-odds ``scattered(spread, proxy_noise, accuracy)``, on a straight line ``spread``."""
        return scattered(self.spread, self.proxy_noise, accuracy) if self.logit else self.spread

    def sd_at(self, proxy: float) -> float:
        """How far a plan's accuracy after the fine-tune may lie from the line at ``proxy``, on the line's scale:
        the scatter where the line reads it (``scatter_at``) widened as a regression's prediction interval is
        (``sqrt(1 + 1/n + (x - mean)^2 / Sxx)``). A line fitted on slow plans, whose proxies bunch near the top,
        knows least about the fast plans far below them, and promotion
        (``moprune.search.promotion.Outlook.expected_gain``) should see that."""
        scatter = self.scatter_at(self.accuracy(proxy))
        if self.mean_proxy is None or self.points == 0 or self.sxx <= 0:
            return scatter
        gap = self._scale(proxy) - self.mean_proxy
        return scatter * math.sqrt(1 + 1 / self.points + gap ** 2 / self.sxx)

    def adjusted(self, proxy: float, dropped: int) -> float:
        """A screened plan's proxy as the line reads it: plus ``per_block`` for each block it dropped."""
        return proxy + self.per_block * dropped


#: The residual sd assumed until 3 plans are fine-tuned, in accuracy units: about what two fine-tune seeds of one
#: plan differ by; and on the log-odds scale, wherever the line reads (0.02 near an accuracy of 0.92; as before
#: 2026-12-05). With one plan fitted the slope's prior widens the sd about five-fold at proxies near chance, and with
#: ``PROXY_NOISE_ODDS`` as the prior instead, round 1 of a test study (``tests/search/test_screen.py``, screened
#: starts) promoted a plan screened at 0.11 while one screened at 0.35 waited.
PRIOR_RESIDUAL = 0.02
PRIOR_RESIDUAL_ODDS = 0.25
#: The least residual sd a straight line keeps, in accuracy units: plans that happen to fall on one line do not make
#: it certain (a log-odds line keeps ``PROXY_NOISE_ODDS``).
LEAST_RESIDUAL = 0.005
#: The sd, in log-odds, that the proxy's own noise adds to where a plan's fine-tune lands, wherever the proxy reads:
#: a few fine-tune steps read a heavily pruned plan no more surely than a light one. Chosen among 0.15, 0.25, 0.3,
#: 0.35 and 0.5 (and a fitted one, which the plans near the top pulled to almost none) by how well the line fitted
#: on the plans before each read the next one over the thirteen bench runs (39 studies) of 2026-12-04/05 (``bench/
#: proxy_line.py``'s spread table): 0.25-0.35 scored best, 0.15 and a fitted one read the low proxies overconfidently.
PROXY_NOISE_ODDS = 0.3
#: The candidate sds of a fine-tune's accuracy (``fit_line`` takes the likeliest): 0.0005 to 1.9 in steps of 15%.
_SCATTER_GRID = tuple(0.0005 * 1.15 ** i for i in range(60))


#: The least slope of a log-odds line below the proxies it was fitted on (``bent``).
SLOPE_BELOW = 1.0


def bent(x: float, slope: float, intercept: float, bend: float | None) -> float:
    """The line at ``x`` (all on its scale), its slope at least ``SLOPE_BELOW`` under ``bend``.

    A line fitted where the fine-tuned plans bunch near dense's accuracy is flat there (accuracy saturates, and the
    plans' scatter hides the trend: the slopes fitted on the bench's studies were under 1 six times in seven), and
    carried straight down it reads the fast plans far below them too high. On the bench's ResNet-20 (``--quick``,
    seed 4, 2026-12-05) the line after the starting plans had a slope of 0.58 and read the uniform 0.85 plan,
    screened at 0.36, at 0.89 against a budget of 0.897 (it gave 0.76), and an allocation plan screened at 0.51 at
    0.92 (it gave 0.81): both were fine-tuned, the run read 0.96x the better sweep. Over the fourteen bench runs
    (42 studies, ``bench/proxy_line.py``) the next fine-tuned plan below every fitted proxy was read with a mean
    absolute error of 0.054 with the bend against 0.067 without on ResNet-20 (signed -0.014 against -0.040: too
    high), and 0.026 against 0.024 on MobileNetV2, whose slopes were near 1 anyway."""
    if bend is None or x >= bend or slope >= SLOPE_BELOW:
        return intercept + slope * x
    return intercept + slope * bend + SLOPE_BELOW * (x - bend)


def unbent(y: float, slope: float, intercept: float, bend: float | None) -> float:
    """The ``x`` at which ``bent`` reads ``y``."""
    if bend is None or slope >= SLOPE_BELOW or y >= intercept + slope * bend:
        return (y - intercept) / slope
    return bend + (y - intercept - slope * bend) / SLOPE_BELOW


def scattered(accuracy_sd: float, proxy_noise: float, accuracy: float) -> float:
    """The sd, in log-odds, of a fine-tuned plan's accuracy about a log-odds line reading ``accuracy``: the
    fine-tune's own scatter, ``accuracy_sd`` in accuracy units (so over p(1 - p) in log-odds), and the proxy's,
    ``proxy_noise`` in log-odds, independent."""
    p = _bounded(accuracy)
    return math.sqrt((accuracy_sd / (p * (1 - p))) ** 2 + proxy_noise ** 2)


def fit_line(xs: list[float], ys: list[float], budget: float, dropped: list[int] | None = None, *,
             logit: bool = True) -> ProxyLine:
    """The shrunk line through (proxy, accuracy) pairs on the log-odds scale of both (``logit=False``: in accuracy
    units, as before 2026-12-04 night; ``bench/proxy_line.py`` compares the two), its residual sd and its floor at
    ``budget``.

    Log-odds: accuracy after the whole fine-tune saturates toward 1 where the proxy still climbs, and the whole
    fine-tune recovers more of a heavily pruned plan than a few steps do. A straight line in accuracy units, its
    slope shrunk toward 1, read the plans with the lowest proxies too low and those with the highest too high: on
    the bench's ResNet-20 at the full budget (seed 0, 2026-12-04) every plan fine-tuned had a proxy of 0.956-0.975
    and an accuracy of 0.975-0.992, the line (slope 0.99, residual sd 0.006) put the floor at a proxy of 0.87 for a
    budget of 0.89, and no plan faster than 2.04x was fine-tuned while the uniform sweep's front reached 3.1x. Over
    six bench studies (`bench/proxy_line.py`, ResNet-20 seeds 0-2 and MobileNetV2 seeds 3-5 at the full budget)
    the line fitted on the plans fine-tuned so far read the next one with a mean absolute error of 0.017 in
    accuracy units against 0.009 on the log-odds scale, and the sweeps' fine-tuned plans whose proxies lie below
    every fitted one 0.12 too low (mean) against 0.02.

    ``dropped``: how many residual blocks each plan dropped. A few fine-tune steps recover a plan that lost a whole
    block less than one that lost channels, while the whole fine-tune recovers both: on the bench's MobileNetV2
    (seed 0, 2026-12-04) a plan dropping two blocks at widths 0.55 screened at 0.56, under the floor, while the
    uniform 0.57 plan screened at 0.66 and fine-tuned to 0.908, and plans dropping those two blocks at 0.45-0.57
    fine-tuned to 0.90-0.94. So each dropped block shifts the proxy by ``per_block`` before the line reads it: the
    mean shift that would put the depth-pruned plans on the line, per block, shrunk toward none by one pseudo-block
    (least squares through the origin on the block counts), fitted with the line in two passes.
    """
    scale, unscale = _transforms(logit)
    prior_spread = PRIOR_SPREAD_ODDS if logit else PRIOR_SPREAD
    # until 3 plans a prior: on log-odds PRIOR_RESIDUAL_ODDS wherever the line reads, none of it the fine-tune's own
    spread, noise = (0.0, PRIOR_RESIDUAL_ODDS) if logit else (PRIOR_RESIDUAL, 0.0)
    dropped = dropped or [0] * len(xs)
    ty = [scale(y) for y in ys]
    per_block = 0.0
    if any(dropped):
        for _ in range(2):
            slope, intercept = shrunk_line([scale(x + per_block * d) for x, d in zip(xs, dropped)], ty, prior_spread)
            needed = [(unscale((y - intercept) / slope) - x) * d for x, y, d in zip(xs, ty, dropped) if d]
            per_block = sum(needed) / (sum(d * d for d in dropped) + 1.0)
        xs = [x + per_block * d for x, d in zip(xs, dropped)]
    tx = [scale(x) for x in xs]
    slope, intercept = shrunk_line(tx, ty, prior_spread)
    weights = None
    if logit:
        if len(xs) >= 3:
            spread, weights, slope, intercept = _weighted_fit(tx, ty, ys, slope, intercept, prior_spread)
            noise = PROXY_NOISE_ODDS
        at_budget = scattered(spread, noise, budget)
    else:
        if len(xs) >= 3:
            residuals = [y - (intercept + slope * x) for x, y in zip(tx, ty)]
            spread = max(math.sqrt(sum(r * r for r in residuals) / (len(xs) - 2)), LEAST_RESIDUAL)
        at_budget = spread
    bend = min(tx) if logit else None
    floor = unscale(proxy_floor(tx, ty, scale(budget), at_budget, prior_spread, weights, bend))
    mean = statistics.fmean(tx)
    sxx = sum((x - mean) ** 2 for x in tx) + prior_spread ** 2 * len(tx)
    return ProxyLine(slope, intercept, spread, floor, budget, max((x for x in xs if x < floor), default=None),
                     per_block, any(dropped), mean, sxx, len(xs), logit=logit, proxy_noise=noise, bend=bend)


def _weighted_fit(tx: list[float], ty: list[float], ys: list[float], slope: float, intercept: float,
                  prior_spread: float) -> tuple[float, list[float], float, float]:
    """(the fine-tune's scatter in accuracy units, the plans' weights, slope, intercept) of a log-odds line: the
    scatter the likeliest under ``scattered`` (``_SCATTER_GRID``, the proxy's noise fixed), each plan weighed by one
    over its variance, three rounds from the unweighted line (``slope``, ``intercept``).

    Why two terms. Even in log-odds (as before 2026-12-05) the plans near an accuracy of 0.99, where a few
    thousandths of accuracy are a wide log-odds scatter, set the spread every plan was read with: the bench's
    ResNet-20 (``--quick`` seed 4) line after its starting plans (accuracies 0.94-0.99) had a residual sd of
    0.64-0.69 log-odds, read plans screened at 0.36-0.47 at 0.84-0.92 give or take all of it, and four of its eight
    searched fine-tunes went to them (0.70-0.78). Even in accuracy units alone (tried on a branch the same day) it
    read every low-proxy plan overconfidently: a few fine-tune steps are a noisier reading of a heavily pruned plan.
    Over the thirteen bench runs (39 studies, ``bench/proxy_line.py``) the two terms read the next fine-tuned plan
    with a mean negative log density of 0.37 among the fitted proxies and 0.85 below them, against 1.23 and 2.23 for
    the even log-odds sd and 0.62 and 3.56 for the even accuracy sd. The two terms alone left that run at 0.96x:
    the line's reading itself was too high there (``bent``)."""
    for _ in range(3):
        residuals = [y - (intercept + slope * x) for x, y in zip(tx, ty)]

        def misfit(sd: float) -> float:  # negative log likelihood of the residuals, up to a constant
            variances = [scattered(sd, PROXY_NOISE_ODDS, y) ** 2 for y in ys]
            return sum(r * r / v + math.log(v) for r, v in zip(residuals, variances))

        spread = min(_SCATTER_GRID, key=misfit)
        weights = [1 / scattered(spread, PROXY_NOISE_ODDS, y) ** 2 for y in ys]
        slope, intercept = shrunk_line(tx, ty, prior_spread, weights)
    return spread, weights, slope, intercept


def proxy_floor(xs: list[float], ys: list[float], budget: float, spread: float = 0.0,
                prior_spread: float | None = None, weights: list[float] | None = None,
                bend: float | None = None) -> float:
    """The proxy at the accuracy budget: where the shrunk line (``shrunk_line``, its prior ``prior_spread``, default
    ``PRIOR_SPREAD``) comes within ``spread`` (the residual sd) of it, or lower where a fine-tuned plan with a lower
    proxy met it. On whatever scale its arguments are given (``fit_line``: log-odds); ``weights`` as
    ``shrunk_line`` takes them, and under ``bend`` the line falls at least as steeply as the proxy (``bent``).

    A few fine-tune steps say less about a heavily pruned plan than about a lightly pruned one: the whole fine-tune
    recovers more of what the steps have not, so the proxy falls faster than the accuracy at the cheap end and a line
    through all plans puts the floor too high there. On the bench's VGG (2026-12-03) the uniform 0.85 plan screened
    at 0.69 and met the budget (0.964) after its fine-tune, while the line through the first six plans it fine-tuned
    put the floor at 0.85, and the screen fine-tuned no plan of its own faster than 3.4x. A plan screened as low as
    one that met the budget may meet it too; and a plan the line puts within one sd of the budget may meet it, as
    the fine-tuned plans scatter about the line (promotion weighs that scatter: ``moprune.search.promotion``). Where
    the line is flat one sd moves the floor far: on that VGG the allocation model's 4-5x plans screened at 0.78,
    under the line's floor, and promotion never weighed them.
    """
    slope, intercept = shrunk_line(xs, ys, PRIOR_SPREAD if prior_spread is None else prior_spread, weights)
    floor = unbent(budget - spread, slope, intercept, bend)
    met = [x for x, y in zip(xs, ys) if y >= budget]
    return min([floor, *met])


#: How far apart (sd) the fine-tuned plans' proxies must lie before their own slope outweighs the prior slope of 1: in
#: accuracy units, and on the log-odds scale ``fit_line`` fits on (0.05 near a proxy of 0.85).
PRIOR_SPREAD = 0.05
PRIOR_SPREAD_ODDS = 0.5


def shrunk_line(xs: list[float], ys: list[float], prior_spread: float = PRIOR_SPREAD,
                weights: list[float] | None = None) -> tuple[float, float]:
    """(slope, intercept) of y on x by least squares with the slope shrunk toward 1 (ridge on slope - 1), each point
    weighed by ``weights`` (default evenly; scaled to a mean of 1, so the prior keeps its strength).

    Proxies that spread more than ``PRIOR_SPREAD`` fit their own slope; proxies bunched together (or a single plan)
    keep slope 1 through their means, which still calibrates the offset: how much the whole fine-tune adds to the
    proxy. A slope that still comes out flat or falling is replaced by 1: a higher proxy never means a worse plan.
    """
    w = [1.0] * len(xs) if not weights else [v / statistics.fmean(weights) for v in weights]
    mx = sum(v * x for v, x in zip(w, xs)) / sum(w)
    my = sum(v * y for v, y in zip(w, ys)) / sum(w)
    sxx = sum(v * (x - mx) ** 2 for v, x in zip(w, xs))
    sxy = sum(v * (x - mx) * (y - my) for v, x, y in zip(w, xs, ys))
    prior = prior_spread ** 2 * len(xs)
    slope = (sxy + prior) / (sxx + prior)
    if slope <= 0:
        slope = 1.0
    return slope, my - slope * mx
