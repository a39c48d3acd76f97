"""How far to trust moprune's latency numbers on this machine: the same measurement repeated, spread reported.

Measures dense resnet18 (10 classes, 32x32 input, batch 64) alone 5 times and a 50%-channel-pruned copy paired
against it 5 times, with moprune's own measurement code and the spec's default settings, and prints per run:
median latency, p10-p90 spread, coefficient of variation of the timed passes, the paired speedup with its p10-p90,
and how many rounds were disturbed by other processes. The summary line gives max/min of the 5 speedups: the
paired method is meant to keep that within 5% even while other processes load the machine.

    .venv/bin/python bench/latency.py [--runs 5] [--threads N] [--repeats 30]

With ``--runtimes eager,compile,onnxruntime`` it measures instead, in each runtime (``measure.runtime``), dense
against 50%-uniform-pruned ResNet-18 and MobileNetV2 (32x32, batch 64, or ``--batch``/``--size``), paired, ``--runs``
times: the median speedup with its min-max, the MAC reduction, and their ratio (1.0: the runtime turns every MAC
removed into time saved). ``--dtype`` and ``--device`` choose the rest; ``--json PATH`` writes
``{"rows": [{"model", "runtime", "speedup", "mac_reduction", "ratio", ...}]}`` (medians over the runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402

from moprune.measure import MeasureSettings, measure_paired, measure_single  # noqa: E402
from moprune.measure.device import device_name  # noqa: E402
from moprune.pruning import apply_plan  # noqa: E402
from moprune.pruning import discover_groups  # noqa: E402
from moprune.spec import MeasureSpec  # noqa: E402


def cv(samples: tuple[float, ...]) -> float:
    return statistics.stdev(samples) / statistics.fmean(samples) if len(samples) > 1 else 0.0


def load_now() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def runtimes_table(args: argparse.Namespace) -> int:
    """Speedup against MAC reduction per runtime: does the runtime turn removed channels into time?"""
    import json

    from moprune.errors import SpecError
    from moprune.measure import count_complexity, measure_architecture
    from moprune.spec import parse_spec

    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    device = torch.device(args.device)
    rows = []
    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {args.batch}, {args.size}x{args.size}, {args.dtype}; {args.runs} paired measurements per cell")
    header = (f"{'model':<13}{'runtime':<13}{'speedup':>9}{'min-max':>13}{'MAC reduction':>15}{'ratio':>7}"
              f"{'prepare s':>11}  ran as")
    print(header)
    print("-" * (len(header) + 30))
    for arch in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(0)
        dense = getattr(torchvision.models, arch)(num_classes=10).eval().to(device)
        x1 = torch.randn(1, 3, args.size, args.size, device=device)
        pruned = apply_plan(dense, {g.root: 0.5 for g in discover_groups(dense, x1)}, x1).model.eval()
        reduction = count_complexity(dense, x1).macs / count_complexity(pruned, x1).macs
        inputs = torch.randn(args.batch, 3, args.size, args.size, device=device)
        for runtime in runtimes:
            try:
                spec = parse_spec({"measure": {"runtime": runtime, "dtype": args.dtype, "batch_size": args.batch,
                                               **({"repeats": args.repeats} if args.repeats else {}),
                                               **({"threads": args.threads} if args.threads else {})}},
                                  source="bench/latency.py")
            except SpecError as exc:
                print(f"{arch:<13}{runtime:<13}  skipped: {exc}")
                continue
            settings = MeasureSettings.from_spec(spec.measure)
            speedups, prepare_s, ran = [], 0.0, ""
            for _ in range(args.runs):
                m = measure_architecture(pruned, dense, inputs, settings, device=device, want_energy=False)
                speedups.append(m.latency.speedup)
                prepare_s, ran = max(prepare_s, m.prepare_s), m.runtime
            med = statistics.median(speedups)
            row = {"model": arch, "runtime": runtime, "dtype": args.dtype, "device": str(device),
                   "speedup": med, "speedup_min": min(speedups), "speedup_max": max(speedups),
                   "speedups": speedups, "mac_reduction": reduction, "ratio": med / reduction,
                   "prepare_s": prepare_s, "ran_as": ran}
            rows.append(row)
            print(f"{arch:<13}{runtime:<13}{med:>8.2f}x{f'{min(speedups):.2f}-{max(speedups):.2f}':>13}"
                  f"{reduction:>14.2f}x{row['ratio']:>7.2f}{prepare_s:>11.1f}  {ran}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=1))
        print(f"written to {args.json}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per measurement (default: the spec's)")
    parser.add_argument("--runtimes", default=None, help="e.g. eager,compile,onnxruntime: the per-runtime table")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (with --runtimes)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--json", default=None, help="with --runtimes: write the rows here")
    args = parser.parse_args()
    if args.runtimes:
        if args.threads:
            torch.set_num_threads(args.threads)
        return runtimes_table(args)
    m = MeasureSpec(**({"repeats": args.repeats} if args.repeats else {}),
                    **({"threads": args.threads} if args.threads else {}))
    if m.threads:
        torch.set_num_threads(m.threads)

    torch.manual_seed(0)
    dense = torchvision.models.resnet18(num_classes=10).eval()
    x1 = torch.randn(1, 3, 32, 32)
    pruned = apply_plan(dense, {g.root: 0.5 for g in discover_groups(dense, x1)}, x1).model
    inputs = torch.randn(64, 3, 32, 32)
    options = MeasureSettings.from_spec(m).latency_options()

    retries = m.max_noisy_retries if m.max_noisy_retries is not None else "repeats + clean rounds so far"
    print(f"device: cpu ({device_name(torch.device('cpu'))}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; resnet18, batch 64, 32x32; {m.warmup} warm-up passes")
    print(f"rounds: at least {m.repeats}, more until the 95% CI of the median is within +-{m.ci_half_width:.0%} "
          f"(at most {m.max_repeats or 8 * m.repeats}); a round is disturbed above {m.max_other_cpu:.0%} "
          f"other-process CPU (disturbed rounds allowed: {retries})")
    header = (f"{'model':<11}{'run':>4}{'median ms':>11}{'p10-p90 ms':>15}{'CV':>7}{'speedup':>9}"
              f"{'p10-p90':>12}{'95% CI':>13}{'clean/taken':>13}{'noisy':>7}{'load':>6}{'secs':>6}")
    print(header)
    print("-" * len(header))
    dense_medians, pruned_medians, speedups = [], [], []
    for run in range(1, args.runs + 1):
        t0 = time.perf_counter()
        single = measure_single(dense, inputs, **options)
        lat, info, ci = single.latency, single.info, single.median_ci95
        dense_medians.append(lat.median_ms)
        print(f"{'dense':<11}{run:>4}{lat.median_ms:>11.2f}{f'{lat.p10_ms:.2f}-{lat.p90_ms:.2f}':>15}"
              f"{cv(lat.samples_ms):>7.1%}{'-':>9}{'-':>12}{f'{ci[0]:.1f}-{ci[1]:.1f}':>13}"
              f"{f'{info.clean}/{info.taken}':>13}{'yes' if info.noisy else 'no':>7}{load_now():>6}"
              f"{time.perf_counter() - t0:>6.1f}", flush=True)
    for run in range(1, args.runs + 1):
        t0 = time.perf_counter()
        p = measure_paired(pruned, dense, inputs, **options)
        lat, info, ci = p.candidate, p.info, p.speedup_ci95
        pruned_medians.append(lat.median_ms)
        speedups.append(p.speedup)
        print(f"{'pruned 50%':<11}{run:>4}{lat.median_ms:>11.2f}{f'{lat.p10_ms:.2f}-{lat.p90_ms:.2f}':>15}"
              f"{cv(lat.samples_ms):>7.1%}{p.speedup:>8.3f}x{f'{p.speedup_p10:.2f}-{p.speedup_p90:.2f}':>12}"
              f"{f'{ci[0]:.3f}-{ci[1]:.3f}':>13}{f'{info.clean}/{info.taken}':>13}"
              f"{'yes' if info.noisy else 'no':>7}{load_now():>6}{time.perf_counter() - t0:>6.1f}", flush=True)
    print("-" * len(header))
    spread = max(speedups) / min(speedups)
    print(f"dense median latency over {args.runs} runs: {min(dense_medians):.2f}-{max(dense_medians):.2f} ms "
          f"(max/min {max(dense_medians) / min(dense_medians):.3f}, CV {cv(tuple(dense_medians)):.1%})")
    print(f"pruned median latency over {args.runs} runs: {min(pruned_medians):.2f}-{max(pruned_medians):.2f} ms "
          f"(max/min {max(pruned_medians) / min(pruned_medians):.3f}, CV {cv(tuple(pruned_medians)):.1%})")
    print(f"paired speedup over {args.runs} runs: {min(speedups):.3f}-{max(speedups):.3f}x "
          f"(max/min {spread:.3f}, CV {cv(tuple(speedups)):.1%}); target max/min <= 1.05: "
          f"{'met' if spread <= 1.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
