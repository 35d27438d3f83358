"""The Predictor's contract: numpy in, numpy out at the input resolution, modes, precision, errors."""
import logging

import cv2
import numpy as np
import pytest
import torch

from tqdm_core import IGNORE_INDEX, Predictor, create_model
from tqdm_core.image_normalization import normalize_images
from tqdm_core.inference import precision as precision_module
from tqdm_core.modeling.semantic_inference import confidence_and_labels, scores_to_probabilities
from tqdm_core.inference.sliding_window import window_starts


@pytest.fixture(scope="module")
def model():
    return create_model("tqdm-tiny-rn", pretrained=None, seed=0)


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_outputs_at_input_resolution(model, precision):
    predictor = Predictor(model, precision=precision)
    for height, width in [(37, 53), (64, 64), (90, 161)]:
        result = predictor.predict(random_image(height, width), return_probabilities=True)
        assert result.labels.shape == (height, width) and result.labels.dtype == np.uint8
        assert result.confidence.shape == (height, width) and result.confidence.dtype == np.float32
        assert result.probabilities.shape == (model.num_classes, height, width)
        assert 0.0 <= result.confidence.min() and result.confidence.max() <= 1.0
        np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-4)
        np.testing.assert_array_equal(result.labels, result.probabilities.argmax(0))
        np.testing.assert_allclose(result.confidence, result.probabilities.max(0), atol=1e-6)


def test_confidence_and_labels_without_forming_probabilities():
    """Pixel 1: S = (0.2, 0.6, 0.2) sums to 1, so P_max = 0.6 for class 1; pixel 2: S = (0.5, 0.5, 1.0) sums to 2,
    P_max = 0.5 for class 2; pixel 3: no query fires (S = 0), confidence 0 (eps-clamped sum), first class."""
    scores = torch.tensor([[0.2, 0.6, 0.2], [0.5, 0.5, 1.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    confidence, labels = confidence_and_labels(scores)
    torch.testing.assert_close(confidence, torch.tensor([[[0.6, 0.5, 0.0]]]))
    assert labels.tolist() == [[[1, 2, 0]]]
    random = torch.rand(2, 7, 9, 11, generator=torch.Generator().manual_seed(6))
    best, _ = scores_to_probabilities(random).max(dim=1)
    assert torch.equal(confidence_and_labels(random)[0], best)  # the same division, bit for bit


def test_slide_equals_whole_when_one_window_covers_the_image(model):
    image = random_image(128, 128, seed=1)
    whole = Predictor(model, precision="fp32", mode="whole").predict(image, return_probabilities=True)
    slide = Predictor(model, precision="fp32", mode="slide", window=128, stride=85).predict(
        image, return_probabilities=True)
    np.testing.assert_array_equal(whole.probabilities, slide.probabilities)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_flip_averages_the_mirrored_scores_and_is_mirror_symmetric(model, mode):
    """flip=True: the mean of the scores of the image and of its mirror image mirrored back; so the prediction
    for a mirrored image is the mirrored prediction (the untrained model alone is not symmetric)."""
    settings = dict(precision="fp32", mode=mode, window=64, stride=43)
    image = random_image(70, 90, seed=3)
    plain, flipped = Predictor(model, **settings), Predictor(model, **settings, flip=True)
    expected = (plain.scores(image[None]) + plain.scores(image[None, :, ::-1]).flip(-1)) / 2
    torch.testing.assert_close(flipped.scores(image[None]), expected, rtol=1e-6, atol=1e-7)
    mirrored = flipped.scores(image[None, :, ::-1])
    torch.testing.assert_close(mirrored.flip(-1), flipped.scores(image[None]), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain.scores(image[None, :, ::-1]).flip(-1), plain.scores(image[None]), atol=1e-3)
    assert flipped.describe()["flip"] is True


def test_slide_covers_large_images(model):
    result = Predictor(model, mode="slide", window=64, stride=43).predict(random_image(100, 150, seed=2))
    assert result.labels.shape == (100, 150)


def test_window_placement_matches_the_paper():
    assert window_starts(1024, 512, 341) == [0, 341, 512]  # METHOD.md 12: 512x1024 gives x = 0, 341, 512
    assert window_starts(512, 512, 341) == [0]
    assert window_starts(2048, 512, 341) == [0, 341, 682, 1023, 1364, 1536]  # Cityscapes: 6 columns
    assert window_starts(300, 512, 341) == [0]


def test_batch_equals_single_and_bgr_equals_flipped_rgb(model):
    predictor = Predictor(model, precision="fp32")
    images = [random_image(64, 96, seed=s) for s in range(3)] + [random_image(50, 70, seed=9)]
    batched = predictor.predict_batch(images, return_probabilities=True)
    for image, result in zip(images, batched):
        single = predictor.predict(image, return_probabilities=True)
        np.testing.assert_allclose(result.probabilities, single.probabilities, atol=1e-5)
    bgr = predictor.predict(images[0][..., ::-1].copy(), channel_order="bgr", return_probabilities=True)
    np.testing.assert_allclose(bgr.probabilities, batched[0].probabilities, atol=1e-6)


def test_confidence_threshold_marks_unlabeled(model):
    image = random_image(64, 64, seed=3)
    plain = Predictor(model, precision="fp32").predict(image)
    threshold = float(np.median(plain.confidence))
    gated = Predictor(model, precision="fp32", confidence_threshold=threshold).predict(image)
    low = plain.confidence < threshold
    assert low.any() and (~low).any()
    assert (gated.labels[low] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(gated.labels[~low], plain.labels[~low])


def test_bf16_runs_a_converted_copy_and_leaves_the_model_alone(model):
    """CPU bf16 converts the weights once into a copy; the caller's model stays fp32 and keeps working."""
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    predictor = Predictor(model, precision="bf16")
    assert predictor.precision == "bf16" and predictor.model is model
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())
    result = predictor.predict(random_image(64, 64, seed=4), return_probabilities=True)
    assert result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-4)  # normalised in fp32


@pytest.mark.parametrize("native_bf16,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_and_is_logged(model, monkeypatch, caplog, native_bf16, expected):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native_bf16)
    with caplog.at_level(logging.INFO, logger="tqdm_core.inference.predictor"):
        predictor = Predictor(model)  # "auto" is the default
    assert predictor.precision == expected and predictor.requested_precision == "auto"
    assert predictor.describe()["precision"] == expected
    assert f"precision 'auto' -> {expected} on cpu" in caplog.text
    assert Predictor(model, runtime="torch", precision="fp32").precision == "fp32"  # an explicit choice stays


def test_scaled_inference_returns_input_resolution(model):
    result = Predictor(model, scale=0.5).predict(random_image(96, 128, seed=5))
    assert result.labels.shape == (96, 128)


@pytest.mark.parametrize("height,width,scale,size", [
    (45, 75, 0.5, (23, 38)),  # 22.5 -> 23: mmcv's int(x + 0.5); Python's round() gives 22 (half to even)
    (64, 96, 0.5, (32, 48)),  # shrinking: no anti-aliasing
    (30, 40, 1.5, (45, 60)),  # enlarging: resized in uint8, then normalised
])
def test_scale_resizes_the_uint8_image_as_the_official_pipeline(model, monkeypatch, height, width, scale, size):
    """The model input is the official `Resize` then `Normalize`: cv2.resize(image, (int(W * scale + 0.5),
    int(H * scale + 0.5)), INTER_LINEAR) on the uint8 image, then normalised; so equal bit for bit."""
    predictor = Predictor(model, precision="fp32", scale=scale)
    image = random_image(height, width, seed=7)
    seen = []
    whole = predictor._whole
    monkeypatch.setattr(predictor, "_whole", lambda images: seen.append(images) or whole(images))
    assert predictor.predict(image).labels.shape == (height, width)
    resized = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
    expected = normalize_images(torch.from_numpy(resized).permute(2, 0, 1)[None])  # (h, w, 3) -> (1, 3, h, w)
    assert seen[0].shape == expected.shape
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_scores_refuse_what_predict_refuses(model):
    predictor = Predictor(model, precision="fp32")
    with pytest.raises(ValueError, match="dtype uint8"):
        predictor.scores(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\) uint8 numpy batch"):
        predictor.scores(random_image(16, 16))


def test_with_scale_shares_the_network_and_equals_a_new_predictor(model):
    base = Predictor(model, precision="fp32")
    half = base.with_scale(0.5)
    assert half._network is base._network and (base.scale, half.scale) == (1.0, 0.5)
    image = random_image(96, 128, seed=6)
    torch.testing.assert_close(half.scores(image[None]), Predictor(model, precision="fp32", scale=0.5).scores(
        image[None]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="scale must be in"):
        base.with_scale(0.0)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((10, 10, 3), np.float32), "dtype uint8"),
    (np.zeros((10, 10), np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((0, 10, 3), np.uint8), "height and width"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images_raise_clear_errors(model, bad, message):
    with pytest.raises(ValueError, match=message):
        Predictor(model).predict(bad)


@pytest.mark.parametrize("kwargs,message", [
    ({"precision": "fp8"}, "precision must be"),
    ({"mode": "tiles"}, "mode must be"),
    ({"precision": "fp16"}, "needs a CUDA device"),
    ({"confidence_threshold": 1.5}, "confidence_threshold"),
    ({"window": 100}, "multiple of"),
    ({"device": "tpu"}, "device must be"),
])
def test_bad_settings_raise_clear_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Predictor(model, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_cuda_request_without_cuda_is_a_clear_error(model):
    with pytest.raises(ValueError, match="CUDA is not available"):
        Predictor(model, device="cuda")
