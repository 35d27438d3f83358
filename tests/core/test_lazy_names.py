"""Package names load their module on first use, once, and unknown names still fail as attributes."""
import subprocess
import sys

import pytest

import tqdm_core
import tqdm_core.inference
from tqdm_core.checkpoint import load_checkpoint
from tqdm_core.inference.predictor import Predictor


def test_light_import_does_not_load_torch_and_first_use_does():
    code = ("import sys, tqdm_core; light = 'torch' not in sys.modules; tqdm_core.load_checkpoint; "
            "print(light, 'torch' in sys.modules, 'load_checkpoint' in vars(tqdm_core))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True", "True"]


def test_lazy_names_are_the_defining_modules_objects():
    assert tqdm_core.load_checkpoint is load_checkpoint
    assert tqdm_core.inference.Predictor is Predictor is tqdm_core.Predictor


@pytest.mark.parametrize("package", [tqdm_core, tqdm_core.inference])
def test_unknown_names_raise_attribute_error(package):
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nonexistent'"):
        package.nonexistent
    assert not hasattr(package, "nonexistent")
