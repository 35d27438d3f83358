"""Predictors keep freed host memory for reuse: a large tensor allocated after a larger one was freed maps no new
pages (glibc), and the Predictor reports the setting. Each case runs in a fresh interpreter: the setting is
process-wide and never undone."""
import json
import platform
import subprocess
import sys

import pytest

from tqdm_core import Predictor, create_model

# Frees a filled 64 MiB tensor, then fills a 32 MiB one and counts the page faults of the second.
_PROBE = """
import json, resource, sys, torch
from tqdm_core.inference.host_memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
torch.empty(16 * 2**20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(8 * 2**20).fill_(1.0)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting exists in glibc malloc only")


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@glibc_only
def test_freed_memory_is_reused_without_new_page_faults():
    pages = 32 * 2**20 // 4096
    default, reused = _probe("default"), _probe("reuse")
    assert default["faults"] >= pages // 2  # the probe can fail: glibc maps fresh pages for a fresh block
    assert reused["applied"] is True
    assert reused["faults"] < pages // 100


@glibc_only
def test_predictor_applies_it_on_the_cpu_and_reports_it():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    assert Predictor(model, precision="fp32").describe()["reuse_memory"] is True
    assert Predictor(model, precision="fp32", reuse_memory=False).describe()["reuse_memory"] is False
