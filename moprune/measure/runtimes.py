"""The runtime a model is timed in: eager PyTorch, ``torch.compile`` (inductor) or ONNX Runtime; dtype and layout.

A pruned model's speedup depends on where it runs (AMC: the same model 1.81x faster on a phone, 1.43x on a Titan
Xp; Torch-Pruning #38: ONNX Runtime 3x slower with odd channel counts), so moprune times it the way it deploys.
``prepare`` turns a model and a batch into what the runtime executes, once per measurement: compiling and exporting
take seconds and are recorded (``Prepared.prepare_s``), never timed. The dense reference is prepared the same way
(and once per study: ``prepare_reference`` keeps it), so a speedup compares like with like.

On a GPU, ONNX Runtime's CUDA and TensorRT providers run on their own stream and synchronise it before ``run``
returns, so host-side and CUDA-event timing both see the whole pass; inputs and outputs stay on the GPU (I/O
binding), never copied through the host inside a timed pass.
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Runtime:
    """How a study times its models: ``MeasureSettings`` carries one."""

    name: str = "eager"  # eager | compile | onnxruntime
    dtype: str = "float32"  # float32 | float16 | bfloat16
    channels_last: bool = False

    def describe(self) -> str:
        layout = ", channels_last" if self.channels_last and self.name != "onnxruntime" else ""
        return f"{self.name} {self.dtype}{layout}"


@dataclass(frozen=True)
class Prepared:
    model: Callable[[torch.Tensor], Any]  # called like a module; has eval()
    inputs: torch.Tensor  # the batch in the runtime's dtype and layout
    prepare_s: float  # seconds spent converting, compiling or exporting (not timed)
    runtime: str  # what ran it, e.g. "onnxruntime 1.22.0 CPUExecutionProvider float32"


def cast_inputs(inputs: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The batch as the runtime reads it: floating inputs in its dtype (token ids stay integers), 4-D in its layout."""
    x = inputs.to(DTYPES[runtime.dtype]) if inputs.is_floating_point() else inputs
    if runtime.channels_last and x.dim() == 4 and runtime.name != "onnxruntime":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def in_form(model: nn.Module, runtime: Runtime) -> bool:
    """Every floating weight already in the runtime's dtype, and 4-D weights channels-last where it asks for them.

    Such a model needs no converted copy; a copy is not always possible: torch's 2:4 semi-structured weights (cast
    to half precision before they are converted) refuse ``clone``, which ``deepcopy`` calls.
    """
    dtype = DTYPES[runtime.dtype]
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != dtype:
            return False
        if (runtime.channels_last and runtime.name != "onnxruntime" and t.dim() == 4
                and not t.is_contiguous(memory_format=torch.channels_last)):
            return False
    return True


def prepare(model: nn.Module, inputs: torch.Tensor, runtime: Runtime) -> Prepared:
    """``model`` (untouched: a copy is converted) ready to run ``inputs`` in ``runtime``; compiled or exported and
    run once here, so no compilation lands in a timed pass."""
    t0 = time.perf_counter()
    if runtime == Runtime():
        return Prepared(model, inputs, 0.0, runtime.describe())
    x = cast_inputs(inputs, runtime)
    described = runtime.describe()
    if runtime.name == "eager" and in_form(model, runtime):
        return Prepared(model, x, 0.0, described)  # nothing to convert (a 2:4 model cast before its weights were)
    m = copy.deepcopy(model).eval()
    if runtime.dtype != "float32":
        m = m.to(DTYPES[runtime.dtype])
    if runtime.channels_last and runtime.name != "onnxruntime":
        m = m.to(memory_format=torch.channels_last)
    if runtime.name == "compile":
        m = torch.compile(m, backend="inductor", dynamic=False)
    elif runtime.name == "onnxruntime":
        m = OrtModel.export(m, x)
        described = f"onnxruntime {m.version} {m.provider} {runtime.dtype}"
    with torch.inference_mode():
        m(x)  # compiles (inductor), builds the session's kernels (ORT): before any timing
    return Prepared(m, x, time.perf_counter() - t0, described)


_references: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Prepared]] = weakref.WeakKeyDictionary()


def prepare_reference(reference: nn.Module, inputs: torch.Tensor, runtime: Runtime) -> Prepared:
    """``prepare`` for the dense reference, kept while the reference lives: compiled once per study, not per trial.

    A preparation that is the reference itself (eager float32, or a model already in the runtime's form) is not
    kept: its ``Prepared`` holds the reference, which would keep
    the weak key alive for the life of the process (one dense model and its inputs leaked per study; measured on
    an H200 by ``bench/gpu_check.py``'s study check, +148 MiB over a resumed 10-trial study).
    """
    from .cache import architecture_signature

    key = (runtime, tuple(inputs.shape), str(inputs.device), architecture_signature(reference))
    kept = _references.get(reference, {})
    if key in kept:
        return kept[key]
    prepared = prepare(reference, inputs, runtime)
    if prepared.model is not reference:  # nothing was prepared where it is the reference itself: not kept
        _references.setdefault(reference, {})[key] = prepared
    return prepared


def ort_providers(device: torch.device) -> list[str]:
    """ONNX Runtime's execution providers for ``device``, best first: TensorRT, then CUDA, where installed."""
    import onnxruntime as ort

    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    chosen = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not chosen:
        raise RuntimeError("measure.runtime onnxruntime on a GPU needs onnxruntime-gpu (the installed onnxruntime "
                           f"offers only {', '.join(available)}): pip install onnxruntime-gpu")
    return chosen



class OrtModel:
    """An ONNX Runtime session called like a module: a torch tensor in, a torch tensor out."""

    def __init__(self, session: Any, input_name: str, device: torch.device, directory: tempfile.TemporaryDirectory):
        import onnxruntime as ort

        self.session, self.input_name, self.device = session, input_name, device
        self.provider = session.get_providers()[0]
        self.version = ort.__version__
        self._directory = directory  # the model file lives as long as the session

    @classmethod
    def export(cls, model: nn.Module, inputs: torch.Tensor) -> OrtModel:
        import onnxruntime as ort

        if inputs.dtype == torch.bfloat16:
            raise ValueError("onnxruntime: bfloat16 inputs have no NumPy type; use dtype float16 or float32")
        directory = tempfile.TemporaryDirectory(prefix="moprune-ort-")
        path = Path(directory.name) / "model.onnx"
        name = "images" if inputs.is_floating_point() else "input_ids"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter; dynamo needs onnxscript
            torch.onnx.export(model, (inputs,), str(path), dynamo=False, input_names=[name],
                              output_names=["logits"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if inputs.device.type == "cpu":
            options.intra_op_num_threads = torch.get_num_threads()  # the study's measure.threads, as torch has it
        session = ort.InferenceSession(str(path), options, providers=ort_providers(inputs.device))
        return cls(session, name, inputs.device, directory)

    def eval(self) -> OrtModel:
        return self

    def __call__(self, x: torch.Tensor) -> Any:
        if self.device.type == "cpu":
            return self.session.run(None, {self.input_name: x.numpy()})[0]
        import numpy as np

        binding = self.session.io_binding()  # on the GPU: no copy through the host inside the pass
        x = x.contiguous()
        element = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64,
                   torch.int32: np.int32}[x.dtype]
        binding.bind_input(self.input_name, device_type="cuda", device_id=self.device.index or 0,
                           element_type=element, shape=tuple(x.shape), buffer_ptr=x.data_ptr())
        binding.bind_output("logits", device_type="cuda", device_id=self.device.index or 0)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]
