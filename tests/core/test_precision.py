"""Precision names, CPU feature detection and what "auto" resolves to (tqdm_core.inference.precision)."""
import contextlib

import pytest
import torch

from tqdm_core.inference import precision
from tqdm_core.inference.precision import CpuInfo, cpu_info, resolve_precision

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC_ROME = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse4_2 avx avx2 fma
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes sve bf16 i8mm
"""


@pytest.mark.parametrize("text,model,flags,native", [
    (SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8480+",
     ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"), True),
    (EPYC_ROME, "AMD EPYC 7B12", ("avx2", "fma"), False),
    (GRAVITON3, None, ("asimd", "sve", "bf16"), True),
])
def test_cpu_info_reads_model_and_matmul_flags(tmp_path, text, model, flags, native):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    info = cpu_info(str(path))
    assert info.flags == flags and info.native_bf16 is native
    assert info.model == (model or info.model) and info.model  # Arm lists no model name: platform's is used
    assert info.capability == torch.backends.cpu.get_cpu_capability()


def test_auto_resolves_by_device_runtime_and_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("auto", cpu, runtime="onnxruntime") == "fp32"  # ONNX Runtime runs fp32 only
    asked = []

    def queried_device(device):
        asked.append(device)
        return contextlib.nullcontext()

    monkeypatch.setattr(torch.cuda, "device", queried_device)
    for native, expected in ((True, "bf16"), (False, "fp16")):
        # Pre-Ampere GPUs emulate bf16: only native support picks it.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True, native=native: native or including_emulation)
        assert resolve_precision("auto", torch.device("cuda:1")) == expected
    assert asked == [torch.device("cuda:1")] * 2  # the Predictor's GPU, not the current one
    assert [resolve_precision(name, cpu) for name in ("fp32", "bf16")] == ["fp32", "bf16"]
    assert resolve_precision("fp16", cuda) == "fp16"


@pytest.mark.parametrize("name,message", [("fp8", "precision must be one of"), ("fp16", "needs a CUDA device")])
def test_bad_precisions_are_clear_errors(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_precision(name, torch.device("cpu"))


def test_native_bf16_needs_one_of_the_bf16_flags():
    assert CpuInfo(model="x", flags=("avx512_bf16",), capability="AVX512").native_bf16
    assert not CpuInfo(model="x", flags=("avx2", "avx512f", "amx_int8"), capability="AVX512").native_bf16
