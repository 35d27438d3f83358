"""Every inference fast path against its plain reference, with the tolerance it is allowed (issue 8).

Tolerances:
- gather-based deformable sampling vs grid_sample / naive loops: 1e-9 in float64 (same arithmetic, other order),
  values and gradients; whole tiny models with either sampler: 1e-4 absolute on logits and masks (fp32).
- un-expanded (B, 1, Q, N) attention mask vs one expanded per head: 1e-6 (the same kernel, broadcast input).
- cached sine position encodings: bit-exact.
- ONNX Runtime (exported fp32 graph) vs eager fp32 Predictor: 1e-4 absolute on class probabilities.
- torch.compile vs eager fp32 Predictor: 1e-4 absolute on class probabilities.
"""
import numpy as np
import pytest
import torch
from torch import nn

from tqdm_core import Predictor, create_model
from tqdm_core.modeling import ms_deform_attn
from tqdm_core.modeling.attention import multi_head_attention
from tqdm_core.modeling.ms_deform_attn import gather_multi_scale, sample_multi_scale
from tqdm_core.modeling.position_encoding import _encode, sine_position_encoding

from tests.core.test_ms_deform_attn import naive_sample

SHAPES = [(3, 4), (5, 2), (6, 7)]


def random_sampling_inputs(batch, queries, heads, head_dim, points, spread, seed):
    """float64 value/locations/weights; locations in [-spread, 1 + spread] so many corners fall outside."""
    generator = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, sum(h * w for h, w in SHAPES), heads, head_dim, generator=generator,
                        dtype=torch.float64)
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=generator, dtype=torch.float64)
    locations = locations * (1 + 2 * spread) - spread
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=generator, dtype=torch.float64)
    return value, locations, weights


@pytest.mark.parametrize("spread", [0.2, 3.0])  # near the border, and far outside (clamping must give zeros)
def test_gather_sampling_equals_naive_and_grid_sample(spread):
    value, locations, weights = random_sampling_inputs(2, 5, 3, 4, 3, spread, seed=0)
    fast = gather_multi_scale(value, SHAPES, locations, weights)
    torch.testing.assert_close(fast, naive_sample(value, SHAPES, locations, weights), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast, sample_multi_scale(value, SHAPES, locations, weights), rtol=1e-9, atol=1e-9)


def test_gather_sampling_gradients_equal_grid_sample():
    value, locations, weights = random_sampling_inputs(2, 4, 2, 3, 2, 0.3, seed=1)
    inputs = [t.requires_grad_() for t in (value, locations, weights)]
    upstream = torch.randn(2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fast = torch.autograd.grad(gather_multi_scale(value, SHAPES, locations, weights), inputs, upstream)
    reference = torch.autograd.grad(sample_multi_scale(value, SHAPES, locations, weights), inputs, upstream)
    for name, got, expected in zip(("value", "locations", "weights"), fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("name", ["tqdm-tiny-rn", "tqdm-tiny-vit"])
def test_models_with_either_sampler_agree(name, monkeypatch):
    model = create_model(name, pretrained=None, seed=0).eval()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast = model(images)
        monkeypatch.setattr(ms_deform_attn, "gather_multi_scale", sample_multi_scale)
        reference = model(images)
    for key in ("pred_logits", "pred_masks"):
        torch.testing.assert_close(fast[key], reference[key], rtol=0, atol=1e-4)


def test_attention_mask_broadcast_over_heads_equals_expanded_mask():
    torch.manual_seed(4)
    attention = nn.MultiheadAttention(16, 4, batch_first=True)
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 12, 16)
    blocked = torch.rand(2, 1, 5, 12) < 0.5
    blocked[:, :, 0] = False  # one row with nothing blocked, as the decoder guarantees
    shared = multi_head_attention(attention, query, memory, memory, blocked)
    per_head = multi_head_attention(attention, query, memory, memory, blocked.expand(-1, 4, -1, -1).contiguous())
    torch.testing.assert_close(shared, per_head, rtol=0, atol=1e-6)


def test_cached_position_encoding_is_exact_and_safe_for_training():
    with torch.inference_mode():
        cached = sine_position_encoding(6, 9, num_feats=8)
    assert not cached.is_inference() and not cached.requires_grad
    assert sine_position_encoding(6, 9, num_feats=8) is cached
    assert torch.equal(cached, _encode(6, 9, 8, 10000.0, None, torch.float32))
    # Inference first (fills the caches), then a training step on the same shapes must still backpropagate.
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        model.eval()(images)
    outputs = model.train()(images)
    outputs["pred_masks"].square().mean().backward()
    assert model.text_encoder.context_tokens.grad is not None


def random_image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.timeout(300)
def test_onnxruntime_matches_eager_fp32(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    image = random_image(60, 90, seed=5)  # padded to 64x96 for the model: exercises crop and resize back
    eager = Predictor(model).predict(image, return_probabilities=True)
    onnx = Predictor(model, runtime="onnxruntime").predict(image, return_probabilities=True)
    np.testing.assert_allclose(onnx.probabilities, eager.probabilities, rtol=0, atol=1e-4)


@pytest.mark.timeout(600)
def test_torch_compile_matches_eager_fp32():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    image = random_image(64, 64, seed=6)
    eager = Predictor(model).predict(image, return_probabilities=True)
    compiled = Predictor(model, compile=True).predict(image, return_probabilities=True)
    np.testing.assert_allclose(compiled.probabilities, eager.probabilities, rtol=0, atol=1e-4)


def test_runtime_arguments_are_checked():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    with pytest.raises(ValueError, match="runtime must be one of"):
        Predictor(model, runtime="tensorrt")
    with pytest.raises(ValueError, match="runs fp32 on the CPU"):
        Predictor(model, runtime="onnxruntime", precision="bf16")
