"""How well does the screen's proxy line read accuracy after the fine-tune? Log-odds against accuracy units.

Promotion (``moprune.search.promotion``) weighs each screened plan by where the line from proxy to accuracy after
the fine-tune (``moprune.search.proxy_line.fit_line``) says its fine-tune will land. This script reads the studies
``bench/search_quality.py --workdir DIR`` left and asks, per screen study, of the line on each scale:

- forward: fitted on the plans the screen had fine-tuned so far (from the third on), how far from its accuracy
  does it read the next one? That is the use promotion makes of it.
- sweeps: fitted on all of the screen's fine-tuned plans, how far from what the uniform and global sweeps'
  studies fine-tuned their plans to does it read the sweep levels the screen screened (proxies from the screen
  study)? Most lie below every fitted proxy: the fast plans promotion must weigh by extrapolation.

- spread: each fine-tuned plan from the fourth on, read by the log-odds line fitted on the plans before it as a
  normal on the log-odds scale (its reading, give or take ``ProxyLine.sd_at``): the mean negative log density of
  what its fine-tune gave and the share within two sds, apart for plans whose proxy lies among the fitted ones and
  for those below every fitted proxy. Expected gain weighs plans by that spread, so an sd that is too narrow where
  the line extrapolates is as costly as a reading that is off.
- promotions: each fine-tuned plan from the third on, read by the log-odds line fitted on the plans before it: under
  the floor (the line plus one sd reaches the budget there), between the floor and the aim (the line reads the
  budget itself, ``ProxyLine.aim``), or at or above the aim; how many of each met the budget after their fine-tune.
  A retrospective reading: runs made with another line or rule promoted on that line, not this one.

It prints mean absolute errors (and the mean signed error, fine-tuned minus read, below every fitted proxy) per
task and over all studies, each scale's final proxy floor per study, and the promotions' table. Reading only:
nothing is trained.

    .venv/bin/python bench/proxy_line.py DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCALES = {"log-odds": True, "accuracy": False}


def lines_before(points: list[tuple[float, float, int]], budget: float, first: int, logit: bool = True):
    """(each plan (proxy, accuracy, blocks dropped) from index ``first`` on, the line fitted on the plans before it,
    the lowest proxy it was fitted on): how promotion met each plan."""
    from moprune.search.proxy_line import fit_line

    for i in range(first, len(points)):
        xs, ys, dropped = (list(c) for c in zip(*points[:i]))
        yield points[i], fit_line(xs, ys, budget, dropped, logit=logit), min(xs)


def forward_errors(points: list[tuple[float, float, int]], budget: float, logit: bool) -> list[float]:
    """Fine-tuned minus read accuracy of each plan (proxy, accuracy, blocks dropped) from the fourth on, the line
    fitted on the plans before it."""
    return [y - line.accuracy(line.adjusted(x, d)) for (x, y, d), line, _ in lines_before(points, budget, 3, logit)]


def sweep_errors(points: list[tuple[float, float, int]], sweeps: list[tuple[float, float]], budget: float,
                 logit: bool) -> tuple[list[float], list[float], float]:
    """(every sweep plan's fine-tuned minus read accuracy, those of the plans below every fitted proxy, the floor),
    the line fitted on all of ``points``; ``sweeps``: (screened proxy, fine-tuned accuracy), no block dropped."""
    from moprune.search.proxy_line import fit_line

    xs, ys, dropped = (list(c) for c in zip(*points))
    line = fit_line(xs, ys, budget, dropped, logit=logit)
    every = [y - line.accuracy(x) for x, y in sweeps]
    below = [y - line.accuracy(x) for x, y in sweeps if x < min(xs)]
    return every, below, line.floor


def spread_scores(points: list[tuple[float, float, int]], budget: float) -> dict[str, list[tuple[float, bool]]]:
    """(negative log density, within two sds) of each plan (proxy, accuracy, blocks dropped) from the fourth on under
    the log-odds line fitted on the plans before it, keyed "within" or "below" (its proxy under every fitted one)."""
    from moprune.search.proxy_line import odds

    scores: dict[str, list[tuple[float, bool]]] = {"within": [], "below": []}
    for (x, y, d), line, lowest in lines_before(points, budget, 3):
        read = line.adjusted(x, d)
        sd = line.sd_at(read)
        z = (odds(y) - (line.intercept + line.slope * odds(read))) / sd
        nll = 0.5 * z * z + math.log(sd) + 0.5 * math.log(2 * math.pi)
        scores["below" if x < lowest else "within"].append((nll, abs(z) <= 2.0))
    return scores


#: Where a promoted plan's proxy stood on the line fitted before its fine-tune (``promotion_outcomes``).
BANDS = ("under the floor", "floor to aim", "at or above the aim")


def promotion_outcomes(points: list[tuple[float, float, int]], budget: float) -> dict[str, list[bool]]:
    """For each band of ``BANDS``, whether each plan (proxy, accuracy, blocks dropped) from the third on that the
    log-odds line fitted on the plans before it put there met ``budget`` after its fine-tune."""
    outcomes: dict[str, list[bool]] = {band: [] for band in BANDS}
    for (x, y, d), line, _ in lines_before(points, budget, 2):
        read = line.adjusted(x, d)
        band = BANDS[0] if read < line.floor else BANDS[1] if read < line.aim else BANDS[2]
        outcomes[band].append(y >= budget)
    return outcomes


def read_study(db: Path) -> tuple[str, float, list[tuple[float, float, int]], list[tuple[float, float]]]:
    """(task, accuracy budget, the screen's fine-tuned plans in order, the sweep plans it screened with the
    accuracy the sweeps' own studies fine-tuned them to) from a bench screen study."""
    import optuna

    from moprune.pruning import dropped_count
    from moprune.record import SCREEN_SUFFIX, TrialRecord, baseline_of

    url = f"sqlite:///{db}"
    names = [s.study_name for s in optuna.get_all_study_summaries(url)]
    name = next(n for n in names if not n.endswith(SCREEN_SUFFIX))
    study = optuna.load_study(study_name=name, storage=url)
    screened = {t.number: t for t in optuna.load_study(study_name=name + SCREEN_SUFFIX, storage=url).get_trials()}
    budget = baseline_of(study).accuracy - study.user_attrs["spec"]["constraints"]["max_accuracy_drop"]
    points = []
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        r = TrialRecord.of(t)
        if not r.rejected and r.screen_trial is not None:
            points.append((screened[r.screen_trial].values[0], t.values[0], dropped_count(r.fixed_plan or r.plan)))
    truth: dict[str, list[float]] = defaultdict(list)
    for kind in ("uniform", "global"):
        other = db.with_name(db.name.replace("-screen-", f"-{kind}-"))
        if not other.exists():
            continue
        u = f"sqlite:///{other}"
        sweep = optuna.load_study(study_name=optuna.get_all_study_summaries(u)[0].study_name, storage=u)
        for t in sweep.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            r = TrialRecord.of(t)
            if r.start and not r.rejected:
                truth[r.start].append(t.values[0])
    sweeps = [(t.values[0], statistics.fmean(truth[TrialRecord.of(t).start])) for t in screened.values()
              if t.state == optuna.trial.TrialState.COMPLETE and TrialRecord.of(t).start in truth]
    return name.split("-")[1], budget, points, sweeps


def _summary(forward: list[float], every: list[float], below: list[float]) -> str:
    def mae(v: list[float]) -> str:
        return f"{statistics.fmean(abs(e) for e in v):.4f}" if v else "-"

    signed = f"{statistics.fmean(below):+.4f}" if below else "-"
    return (f"forward {mae(forward)} (n {len(forward)}); sweeps {mae(every)} (n {len(every)}), below every fitted "
            f"proxy {mae(below)}, signed {signed} (n {len(below)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path, help="search_quality.py --workdir directories")
    args = parser.parse_args(argv)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dbs = sorted(db for w in args.workdirs for db in w.glob("studies-*/*-screen-s*.db"))
    if not dbs:
        parser.error(f"no bench screen studies under {', '.join(map(str, args.workdirs))} (studies-*/*-screen-s*.db)")
    errors: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    promoted: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    spread: dict[str, dict[str, list[tuple[float, bool]]]] = defaultdict(lambda: defaultdict(list))
    for db in dbs:
        task, budget, points, sweeps = read_study(db)
        if len(points) < 4:
            print(f"{db.name}: {len(points)} fine-tuned plans, too few to read")
            continue
        floors = []
        for scale, logit in SCALES.items():
            every, below, floor = sweep_errors(points, sweeps, budget, logit)
            for key, values in (("forward", forward_errors(points, budget, logit)), ("every", every),
                                ("below", below)):
                errors[(task, scale)][key] += values
                errors[("all", scale)][key] += values
            floors.append(f"{scale} {floor:.3f}")
        for where, scored in spread_scores(points, budget).items():
            spread[task][where] += scored
            spread["all"][where] += scored
        for band, met in promotion_outcomes(points, budget).items():
            promoted[task][band] += met
            promoted["all"][band] += met
        print(f"{db.name}: {len(points)} fine-tuned plans, {len(sweeps)} sweep plans; final floor: "
              f"{', '.join(floors)} (budget {budget:.3f})")
    print("\nmean absolute error of the line's reading of accuracy after the fine-tune (signed: fine-tuned - read)")
    for (task, scale), e in sorted(errors.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        print(f"{task:<12} {scale:<9} {_summary(e['forward'], e['every'], e['below'])}")
    print("\nthe next fine-tuned plan under the log-odds line's spread (sd_at): mean negative log density, share "
          "within 2 sd (n)")
    for task, where in sorted(spread.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        print(f"{task:<12} " + "; ".join(
            f"{name} proxies {statistics.fmean(n for n, _ in where[name]):+.2f}, "
            f"{sum(w for _, w in where[name]) / len(where[name]):.2f} ({len(where[name])})" if where[name]
            else f"{name} proxies -" for name in ("within", "below")))
    print("\nfine-tuned plans by where the log-odds line fitted before each put its proxy: met the budget / plans")
    for task, bands in sorted(promoted.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        print(f"{task:<12} " + "; ".join(f"{band} {sum(bands[band])}/{len(bands[band])}" for band in BANDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
