"""precision=auto: the fastest arithmetic this machine computes natively, and why it was chosen."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products in hardware. Elsewhere oneDNN emulates bf16 and
    a training step runs several times slower than in fp32 (docs/performance.md), so auto keeps
    fp32 there."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_tile"))


def resolve_precision(requested: str | int, accelerator: str = "auto") -> tuple[str, str]:
    """(the precision Lightning gets, why). Only precision=auto is decided here: bf16-mixed where
    the device multiplies bf16 natively (same accuracy, a faster step), else 32-true."""
    if requested != "auto":
        return str(requested), "asked for"
    wants_gpu = str(accelerator) in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "auto: this GPU computes bf16 natively"
        return "32-true", "auto: this GPU has no native bf16"
    if str(accelerator) not in ("auto", "cpu"):
        return "32-true", f"auto: fp32 on accelerator={accelerator}"
    if cpu_has_native_bf16():
        return "bf16-mixed", "auto: this CPU has bf16 instructions (AVX512-BF16 or AMX)"
    return "32-true", "auto: this CPU has no bf16 instructions, so fp32 is faster"
