"""ONNX export of a pruned model, checked against torch's outputs with ONNX Runtime before it is kept."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MopruneError, SpecError

ONNX_ATOL = 1e-4


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise SpecError(f"--format onnx needs the onnx extra ({exc.name} is not installed): "
                        "install moprune[onnx], e.g. pip install 'moprune[onnx]'") from None


def export_onnx(model: nn.Module, batch: torch.Tensor, path: Path) -> dict[str, Any]:
    """Write ``model.onnx`` (dynamic batch) and check onnxruntime's outputs against torch's (atol 1e-4)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    tmp = path.with_name(path.name + ".tmp")
    name = "images" if batch.is_floating_point() else "input_ids"  # a text model reads token ids
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True, which needs onnxscript as well.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (batch[:2],), str(tmp), dynamo=False, input_names=[name],
                          output_names=["logits"], dynamic_axes={name: {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: batch.numpy()})[0]
    with torch.inference_mode():
        want = model(batch).numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= ONNX_ATOL:
        tmp.unlink(missing_ok=True)
        raise MopruneError(f"model.onnx: onnxruntime's outputs differ from torch's by {diff:.2e} (> {ONNX_ATOL}); "
                           "not written")
    os.replace(tmp, path)
    opset = onnx.load(str(path), load_external_data=False).opset_import[0].version
    return {"file": path.name, "opset": opset, "checked_with": f"onnxruntime {ort.__version__} (CPU)",
            "batch": len(batch), "max_abs_diff": diff, "atol": ONNX_ATOL}
