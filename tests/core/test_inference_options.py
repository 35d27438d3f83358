"""InferenceOptions: the Predictor's names, defaults, choices and ranges, validated in one place."""
import dataclasses
import inspect

import pytest

from tqdm_core import InferenceOptions, InvalidOption, Predictor, create_model
from tqdm_core.inference import predictor as predictor_module
from tqdm_core.inference.options import CHOICES, RANGES, check_option


@pytest.fixture(scope="module")
def model():
    return create_model("tqdm-tiny-rn", pretrained=None, seed=0)


def test_fields_and_defaults_are_the_predictors():
    """The options are Predictor arguments, with its defaults (read from its signature)."""
    signature = inspect.signature(Predictor.__init__).parameters
    options = InferenceOptions()
    for field in dataclasses.fields(InferenceOptions):
        default = signature[field.name].default
        # scale None means "the checkpoint's recommendation", which is 1.0 for a model that recommends none.
        expected = None if field.name == "scale" else default
        assert getattr(options, field.name) == expected, field.name
    assert options.predictor_arguments(recommended_scale=None)["scale"] == signature["scale"].default
    assert CHOICES == {"precision": tuple(predictor_module.PRECISIONS), "mode": predictor_module.MODES,
                       "runtime": predictor_module.RUNTIMES}


@pytest.mark.parametrize("option", sorted(RANGES))
def test_every_accepted_value_runs_in_the_predictor_and_the_bounds_agree(model, option):
    """Both ends of each range build a Predictor; just outside, both the options and the Predictor refuse."""
    low, high = RANGES[option]
    step = 1 if isinstance(low, int) else 1e-6
    extra = {"stride": 16} if option == "window" else {"window": 8192} if option == "stride" else {}
    for value in (low, high):
        if option == "window":
            value -= value % model.size_divisor  # the one model-dependent rule, checked by the Predictor
        Predictor(model, **InferenceOptions(**{option: value, **extra}).predictor_arguments(recommended_scale=None))
    with pytest.raises(InvalidOption, match=f"'{option}' must be in"):
        InferenceOptions(**{option: low - step, **extra})
    with pytest.raises(InvalidOption, match=f"'{option}' must be in"):
        InferenceOptions(**{option: high + step, **extra})
    for value in (low - step, high + step):
        with pytest.raises(ValueError, match=f"{option} must be in"):
            Predictor(model, **{option: value, **extra})


@pytest.mark.parametrize("changes, message", [
    ({"precision": "fp8"}, f"'precision' must be one of {', '.join(map(repr, CHOICES['precision']))}, got 'fp8'"),
    ({"mode": "tiles"}, "'mode' must be one of 'whole', 'slide', got 'tiles'"),
    ({"runtime": "tensorrt"}, "'runtime' must be one of 'torch', 'onnxruntime', got 'tensorrt'"),
    ({"device": "gpu"}, "'device' must be 'cpu', 'cuda' or 'cuda:<index>', got 'gpu'"),
    ({"window": 512.0}, "'window' must be an integer, got 512.0"),
    ({"scale": "half"}, "'scale' must be a finite number, got 'half'"),
    ({"scale": float("nan")}, "'scale' must be a finite number, got nan"),
    ({"compile": 1}, "'compile' must be true or false, got 1"),
    ({"window": 256, "stride": 300}, "'stride' must be at most 'window' (256): windows would leave gaps, got 300"),
    ({"precision": "fp16"}, "'precision' must be 'fp32' or 'bf16' on the CPU ('fp16' needs a CUDA 'device')"),
    ({"runtime": "onnxruntime", "precision": "bf16"}, "'runtime' must be 'torch' unless 'precision' is 'fp32'"),
])
def test_invalid_options_name_the_option_the_rule_and_the_value(changes, message):
    with pytest.raises(InvalidOption) as error:
        InferenceOptions(**changes)
    assert message in str(error.value)


def test_errors_speak_the_front_ends_names():
    with pytest.raises(InvalidOption) as error:
        InferenceOptions(window=256, stride=300)
    names = {"window": "slide_window", "stride": "slide_stride"}
    assert error.value.describe(names) == ("'slide_stride' must be at most 'slide_window' (256): windows would "
                                           "leave gaps, got 300")


def test_scale_none_takes_the_recommendation_and_checks_it():
    assert InferenceOptions().predictor_arguments(recommended_scale=0.5)["scale"] == 0.5
    assert InferenceOptions(scale=2.0).predictor_arguments(recommended_scale=0.5)["scale"] == 2.0
    with pytest.raises(InvalidOption, match=r"'scale' must be in \[0.05, 8.0\], got 0.01"):
        InferenceOptions().predictor_arguments(recommended_scale=0.01)
    check_option("scale", None)
    with pytest.raises(InvalidOption):
        check_option("confidence_threshold", None)


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        InferenceOptions().scale = 0.5
