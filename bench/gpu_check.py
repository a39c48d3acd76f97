"""The GPU check: everything moprune can only show on an NVIDIA GPU, as one command with one report.

Run it on a machine with a CUDA GPU, NVML and the project installed (``make install`` or ``pip install -e .[onnx]``):

    .venv/bin/python bench/gpu_check.py [--device cuda:0] [--quick] [--out DIR]

It prints, in order, each step's output and a last summary line per step (passed / failed / skipped, seconds):
1. the device: name, driver, compute capability, MIG mode, clocks, power limit, as NVML reports them;
2. ``pytest -m gpu``: the GPU-only tests (CUDA graphs on the model's device, CUDA-event timing, NVML energy,
   2:4 semi-structured kernels, workers sharing a GPU);
3. ``bench/latency.py --runtimes eager,compile,onnxruntime --device D --dtype bfloat16`` and the same in float32:
   dense vs 50%-pruned ResNet-18 and MobileNetV2, speedup / MAC reduction per runtime;
4. a short study on the GPU (the quickstart spec with ``device: D``, 4 trials, energy as an objective), then
   ``moprune status``: a trial's latency and energy measured by the real meters.
Nothing here estimates: a step that cannot run says why and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_report(device: str) -> dict:
    import torch

    from moprune.measure.device import device_name, driver_version, sm_clock_mhz

    dev = torch.device(device)
    out: dict = {"device": device, "name": device_name(dev), "driver": driver_version(dev),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))),
                 "sm_clock_mhz": sm_clock_mhz(dev), "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(dev.index or 0)
        try:
            out["mig_mode"] = pynvml.nvmlDeviceGetMigMode(handle)[0]
        except pynvml.NVMLError:
            out["mig_mode"] = "not supported"
        out["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        out["temperature_c"] = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
        out["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
    except Exception as exc:  # the report goes on without NVML's part, saying why
        out["nvml"] = f"unavailable: {exc}"
    return out


def step(name: str, cmd: list[str], results: list, timeout: int) -> None:
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, timeout=timeout).returncode
        state = "passed" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        state = f"failed (over {timeout} s)"
    results.append((name, state, time.perf_counter() - t0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--quick", action="store_true", help="3 runs per latency cell, float32 runtimes skipped")
    parser.add_argument("--out", default=None, help="where the JSON of each step goes (default: a temp dir)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this script checks what only a GPU can show")
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="moprune-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    report = device_report(args.device)
    print(json.dumps(report, indent=1))
    (out / "device.json").write_text(json.dumps(report, indent=1))
    py, runs = sys.executable, "3" if args.quick else "5"
    results: list = []
    step("gpu tests", [py, "-m", "pytest", "-q", "-m", "gpu", "tests"], results, 900)
    dtypes = ["bfloat16"] if args.quick else ["bfloat16", "float32"]
    for dtype in dtypes:
        step(f"runtimes {dtype}", [py, "bench/latency.py", "--runtimes", "eager,compile,onnxruntime", "--device",
                                   args.device, "--dtype", dtype, "--batch", "256", "--runs", runs,
                                   "--json", str(out / f"runtimes_{dtype}.json")], results, 900)
    import yaml

    spec = out / "gpu_quick.yaml"
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(name="gpu_check", device=args.device, storage=f"sqlite:///{out / 'gpu_check.db'}",
                objectives=["accuracy", "latency_ms", "energy_mj"],
                search={"sampler": "tpe", "n_trials": 4, "seed_trials": ["dense", "uniform"], "uniform_count": 2})
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    step("study on the GPU", [py, "-m", "moprune", "run", str(spec)], results, 900)
    step("status", [py, "-m", "moprune", "status", str(spec)], results, 120)
    print("\n=== summary")
    for name, state, seconds in results:
        print(f"{name:<22}{state:<24}{seconds:>7.0f} s")
    print(f"files: {out}")
    return 0 if all(state == "passed" for _, state, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
