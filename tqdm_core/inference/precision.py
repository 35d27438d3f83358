"""Inference precision: the names a user can ask for, the CPU features that decide "auto", and what it resolves to.

"auto" picks the fastest precision that keeps the outputs close to fp32 (issue 14):
- CPU with native bf16 instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16): "bf16" (README "Speed" has the
  measured gain);
- other CPUs: "fp32" (their bf16 matmuls are emulated and up to 100x slower than fp32);
- CUDA: "bf16" where the GPU supports it, else "fp16".
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16, x86 AMX, Arm v8.6 BF16
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                  "amx_int8", "asimd", "sve", "bf16")  # the ones that decide matmul speed, for reports


@dataclass(frozen=True)
class CpuInfo:
    """What this CPU offers for matmuls.

    Attributes:
        model: the model name (/proc/cpuinfo "model name", else `platform.processor()`).
        flags: the `REPORTED_FLAGS` this CPU has, in that order.
        capability: the vector ISA PyTorch dispatches to (`torch.backends.cpu.get_cpu_capability()`, e.g. "AVX512").
    """

    model: str
    flags: tuple[str, ...]
    capability: str

    @property
    def native_bf16(self) -> bool:
        """True if the CPU computes bf16 dot products in hardware (then bf16 matmuls beat fp32)."""
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)


@functools.cache
def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> CpuInfo:
    """The CPU model and matmul-relevant flags: from /proc/cpuinfo on Linux, else from PyTorch's own checks."""
    model, flags = "", set()
    path = Path(cpuinfo_path)
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:  # "features" on Arm
                flags = set(value.split())
    else:
        flags = {flag for flag, present in (("avx512_bf16", torch.cpu._is_avx512_bf16_supported()),
                                            ("amx_bf16", torch.cpu._is_amx_tile_supported())) if present}
    return CpuInfo(model=model or platform.processor() or platform.machine(),
                   flags=tuple(flag for flag in REPORTED_FLAGS if flag in flags),
                   capability=torch.backends.cpu.get_cpu_capability())


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 matmuls natively (AVX512-BF16, AMX or Arm BF16), where bf16 beats fp32."""
    return cpu_info().native_bf16


def resolve_precision(precision: str, device: torch.device, *, runtime: str = "torch") -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") that `precision` means on `device`.

    Args:
        precision: one of `PRECISIONS`.
        device: where the model runs.
        runtime: the Predictor's runtime; "onnxruntime" runs fp32 only, so "auto" is "fp32" there.

    Raises:
        ValueError: for an unknown name, or "fp16" on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device; on CPU use 'bf16', 'fp32' or 'auto'")
    if precision != "auto":
        return precision
    if runtime == "onnxruntime":
        return "fp32"
    if device.type == "cuda":
        # Native bf16 only (Ampere and newer): torch's default also counts the emulated bf16 of older GPUs.
        with torch.cuda.device(device):
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"
