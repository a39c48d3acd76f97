"""Runtimes: a model is timed as it deploys (eager, compiled, ONNX Runtime; dtype, layout), dense alike."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

from moprune.measure import MeasureSettings, measure_architecture
from moprune.measure.runtimes import Runtime, prepare, prepare_reference


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)).eval()


X = torch.randn(4, 3, 8, 8)


def test_eager_float32_is_the_model_itself_at_no_cost():
    model = _net()
    prepared = prepare(model, X, Runtime())
    assert prepared.model is model and prepared.inputs is X and prepared.prepare_s == 0.0
    assert prepared.runtime == "eager float32"


def test_a_dtype_and_layout_convert_a_copy_and_the_inputs():
    model = _net()
    prepared = prepare(model, X, Runtime(dtype="bfloat16", channels_last=True))
    assert next(model.parameters()).dtype == torch.float32, "the caller's model is untouched"
    assert prepared.inputs.dtype == torch.bfloat16
    assert prepared.inputs.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = model(X)
        got = prepared.model(prepared.inputs).float()
    assert torch.allclose(got, want, atol=0.1), (got - want).abs().max()
    assert prepared.runtime == "eager bfloat16, channels_last"


def test_token_ids_stay_integers_in_a_half_precision_runtime():
    from moprune.measure.runtimes import cast_inputs

    ids = torch.randint(0, 100, (2, 16))
    assert cast_inputs(ids, Runtime(dtype="float16")).dtype == torch.int64


def test_onnxruntime_runs_the_exported_model_with_torchs_outputs():
    pytest.importorskip("onnxruntime")
    model = _net()
    prepared = prepare(model, X, Runtime(name="onnxruntime"))
    assert prepared.runtime.startswith("onnxruntime ") and "CPUExecutionProvider float32" in prepared.runtime
    assert prepared.prepare_s > 0, "the export is recorded, not timed"
    with torch.no_grad():
        want = model(X).numpy()
    got = prepared.model(prepared.inputs)
    assert abs(got - want).max() < 1e-4


def test_the_dense_reference_is_prepared_once_while_it_lives():
    pytest.importorskip("onnxruntime")
    dense = _net()
    first = prepare_reference(dense, X, Runtime(name="onnxruntime"))
    assert prepare_reference(dense, X, Runtime(name="onnxruntime")) is first
    assert prepare_reference(dense, X, Runtime()) is not first, "each runtime its own"


@pytest.mark.parametrize("runtime", [Runtime(), Runtime(channels_last=True)], ids=["eager", "channels_last"])
def test_a_prepared_reference_does_not_outlive_its_model(runtime):
    """A study's dense model is freed with the study: kept preparations must not hold it (the eager one did, and
    leaked one dense model and its inputs per study: +148 MiB of GPU memory on an H200 over a resumed study)."""
    dense = _net()
    prepare_reference(dense, X, runtime)
    alive = weakref.ref(dense)
    del dense
    gc.collect()
    assert alive() is None


def test_a_model_already_in_the_runtimes_form_is_timed_as_it_is():
    """No copy where nothing converts: a 2:4 model's semi-structured weights (cast first) cannot be copied."""
    half = Runtime(dtype="bfloat16")
    cast = copy.deepcopy(_net()).to(torch.bfloat16)
    prepared = prepare(cast, X, half)
    assert prepared.model is cast and prepared.inputs.dtype == torch.bfloat16 and prepared.prepare_s == 0.0
    float32 = _net()
    converted = prepare(float32, X, half)
    assert converted.model is not float32 and next(float32.parameters()).dtype == torch.float32, "left untouched"
    alive = weakref.ref(cast)
    prepare_reference(cast, X, half)
    del cast, prepared
    gc.collect()
    assert alive() is None, "a reference used as it is is not kept"


def test_a_paired_measurement_in_onnxruntime_times_both_models_there():
    pytest.importorskip("onnxruntime")
    candidate, dense = _net(), nn.Sequential(_net(), nn.Linear(4, 4)).eval()
    settings = MeasureSettings(batch_size=4, warmup=1, repeats=3, ci_half_width=None, max_other_cpu=1.0,
                               runtime=Runtime(name="onnxruntime"))
    arch = measure_architecture(candidate, dense, X, settings, device=torch.device("cpu"), want_energy=False)
    assert arch.runtime.startswith("onnxruntime") and arch.prepare_s > 0 and arch.paired
    assert arch.latency.speedup > 0 and arch.latency.candidate.median_ms > 0


@pytest.mark.slow
def test_compile_times_the_inductor_graph_with_the_models_outputs():
    model = _net()
    prepared = prepare(model, X, Runtime(name="compile"))
    assert prepared.runtime == "compile float32" and prepared.prepare_s > 0
    with torch.inference_mode():
        assert torch.allclose(prepared.model(X), model(X), atol=1e-5)
