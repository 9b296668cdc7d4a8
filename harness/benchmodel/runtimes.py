"""Runtimes: one way each of running a model's forward pass, behind one interface.

Every runtime gives ``infer(x) -> np.ndarray`` (float32 output of the last head) and,
for the PyTorch ones, ``train_step(x)``. Before any timing, ``infer`` on a fixed input
is compared with eager fp32 PyTorch; ONNX Runtime and OpenVINO rows are only timed
when the outputs agree within ``EXPORT_TOLERANCE``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

RUNTIMES = ("eager", "bf16", "fp16", "channels_last", "compile", "onnxruntime", "openvino")
# (absolute, relative to the largest |reference output|): exported graphs must match fp32 PyTorch.
EXPORT_TOLERANCE = (1e-5, 1e-3)
# Reduced-precision runtimes are reported with their error, not gated.
CHECKED = ("onnxruntime", "openvino")


class RuntimeUnavailable(RuntimeError):
    """This runtime cannot run here (fp16 without CUDA, a missing package)."""


@dataclass
class Runner:
    name: str
    precision: str
    infer: Callable[[torch.Tensor], np.ndarray]
    train_step: Callable[[torch.Tensor], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _last(out: Any) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


def _torch_runner(
    name: str,
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    compiled: bool,
) -> Runner:
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        # Models of one class share the code object that dynamo counts recompiles on:
        # without a reset, the ninth compile (e.g. EfficientNet-B3 after B0-B2) silently
        # runs eager (config.recompile_limit), and its row would not be torch.compile's.
        torch._dynamo.reset()
    forward = torch.compile(model) if compiled else model

    def cast() -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def move(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    @torch.no_grad()
    def infer(x: torch.Tensor) -> np.ndarray:
        model.eval()
        with cast():
            out = _last(forward(move(x)))
        return out.float().cpu().numpy()

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def train_step(x: torch.Tensor) -> None:
        model.train()
        with cast():
            out = _last(forward(move(x)))
        loss = out.float().pow(2).mean()  # any scalar: the step's cost does not depend on the loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    # torch.compile of the training step doubles the compile time; it is left to GPU runs.
    return Runner(name, precision, infer, None if compiled else train_step)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The model as ONNX with a dynamic batch axis (TorchScript-based exporter:
    seconds per model where the dynamo exporter takes minutes on a small CPU)."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(),
            (example.cpu(),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return path


def _onnxruntime_runner(onnx_path: Path, threads: int) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeUnavailable("onnxruntime is not installed (pip install onnxruntime)") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def infer(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: x.cpu().numpy()})[0]

    return Runner("onnxruntime", "fp32", infer, info={"onnxruntime_version": ort.__version__})


def _openvino_runner(onnx_path: Path, threads: int) -> Runner:
    try:
        import openvino as ov
    except ImportError as e:
        raise RuntimeUnavailable("openvino is not installed (pip install openvino)") from e
    core = ov.Core()
    # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise infer in bf16.
    compiled = core.compile_model(
        ov.convert_model(str(onnx_path)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads},
    )
    request = compiled.create_infer_request()

    def infer(x: torch.Tensor) -> np.ndarray:
        return np.asarray(request.infer({0: x.cpu().numpy()})[compiled.output(0)])

    return Runner("openvino", "fp32", infer, info={"openvino_version": ov.__version__})


def make_runner(
    name: str, model: nn.Module, example: torch.Tensor, device: torch.device, workdir: Path, threads: int
) -> Runner:
    """A fresh runner of ``name`` for ``model`` (which it may move or convert)."""
    if name == "eager":
        return _torch_runner(name, model, device, None, False, False)
    if name == "bf16":
        return _torch_runner(name, model, device, torch.bfloat16, False, False)
    if name == "fp16":
        if device.type != "cuda":
            raise RuntimeUnavailable("fp16 autocast needs CUDA")
        return _torch_runner(name, model, device, torch.float16, False, False)
    if name == "channels_last":
        return _torch_runner(name, model, device, None, True, False)
    if name == "compile":
        return _torch_runner(name, model, device, None, False, True)
    if name in ("onnxruntime", "openvino"):
        onnx_path = workdir / "model.onnx"
        if not onnx_path.exists():
            export_onnx(model, example, onnx_path)
        runner = (_onnxruntime_runner if name == "onnxruntime" else _openvino_runner)(onnx_path, threads)
        runner.info["onnx_mb"] = onnx_path.stat().st_size / 2**20
        return runner
    raise ValueError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")


def output_error(reference: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """(max absolute difference, allowed difference under EXPORT_TOLERANCE)."""
    if reference.shape != output.shape:
        raise ValueError(f"output shape {output.shape} differs from PyTorch's {reference.shape}")
    atol, rtol = EXPORT_TOLERANCE
    return float(np.abs(reference - output).max()), atol + rtol * float(np.abs(reference).max())
