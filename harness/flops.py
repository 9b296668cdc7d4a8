"""Model FLOPs per training sample, and the dense peak of known GPUs (for MFU).

FLOPs are counted once at start-up by ``torch.utils.flop_counter.FlopCounterMode``
on one forward + backward pass of the task's loss, on a copy of the model on the
``meta`` device: no arithmetic runs, no weights or BatchNorm statistics change,
and no random number is drawn, so counting never perturbs the run. The counter
knows the matrix products and convolutions (mm, addmm, bmm, convolution and its
backward, attention); element-wise work (activations, norms, the optimizer) is
not counted, as in the usual MFU convention (PaLM, torchtitan).

One correction: torch's formula for ``convolution_backward`` counts the weight gradient
of a grouped convolution ``groups`` times over (it takes all input channels per output
channel), which inflates depthwise convolutions (EfficientNet) by up to ~100x. The
counter is given the same formula with that term divided by ``groups``
(:func:`_conv_backward_flop`); for ``groups == 1`` both agree exactly.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# Dense (no structured sparsity) peak TFLOP/s per GPU, from the vendors' data sheets.
# Matched against torch.cuda.get_device_name() in order: specific names first.
# precision -> TFLOP/s; a precision the GPU's tensor cores lack is absent.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    (r"H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (r"H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (r"H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM: "H100 80GB HBM3"
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    (r"L4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"A10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"V100.*PCIE|V100S", {"fp32": 14.0, "fp16": 112.0}),
    (r"V100", {"fp32": 15.7, "fp16": 125.0}),  # SXM2
    (r"T4\b", {"fp32": 8.1, "fp16": 65.0}),
)


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak TFLOP/s of one GPU at ``precision`` (fp32, tf32, bf16, fp16); None when the
    GPU or the precision is not in the table, or for a MIG slice (a fraction of the GPU)."""
    if "MIG" in device_name:
        return None
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peaks.get(precision)
    return None


def compute_precision(amp: str, device: torch.device) -> str:
    """The precision the model's matrix products run in: the autocast dtype, else TF32 when
    PyTorch lets cuBLAS or cuDNN use it (cuDNN convolutions do by default), else fp32."""
    if amp in ("fp16", "bf16"):
        return amp
    if device.type == "cuda" and (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32):
        return "tf32"
    return "fp32"


def _conv_backward_flop(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """torch.utils.flop_counter.conv_backward_flop with the weight-gradient term divided by ``groups``."""
    from torch.utils.flop_counter import conv_flop_count

    def t(shape: Any) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:  # grad_input: a (transposed) convolution of grad_out with the weight
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:  # grad_weight: a convolution of input and grad_out, per group
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // max(1, groups)
    return flops


def flop_counter() -> Any:
    """A ``FlopCounterMode`` (no display) with the grouped-convolution backward correction."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}
    )


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_meta(v) for v in value)
    return value


def count_training_flops(
    model: nn.Module, batch: dict[str, Any], loss_fn: Callable[[nn.Module, dict[str, Any]], torch.Tensor]
) -> int:
    """FLOPs of one forward + backward of ``loss_fn(model, batch)``, counted on meta copies
    of ``model`` and ``batch`` (the originals are not touched)."""
    meta_model = copy.deepcopy(model).to("meta")
    meta_model.train()
    meta_batch = _to_meta(batch)
    counter = flop_counter()
    with torch.random.fork_rng(devices=[]), counter:
        loss = loss_fn(meta_model, meta_batch)
        loss.backward()
    return int(counter.get_total_flops())


def flops_per_sample(
    model: nn.Module, batch: dict[str, Any], loss_fn: Callable[[nn.Module, dict[str, Any]], torch.Tensor]
) -> float:
    """Training FLOPs (forward + backward) per sample of ``batch``."""
    return count_training_flops(model, batch, loss_fn) / int(batch["input"].shape[0])
