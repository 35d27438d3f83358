"""Every inference fast path against its plain reference, with the tolerance it is allowed (issues 8 and 14).

Tolerances:
- gather-based deformable sampling vs grid_sample / naive loops: 1e-9 in float64 (same arithmetic, other order),
  values and gradients; whole tiny models with either sampler: 1e-4 absolute on logits and masks (fp32).
- un-expanded (B, 1, Q, N) attention mask vs one expanded per head: 1e-6 (the same kernel, broadcast input).
- attention of many queries to a few keys with the projections folded onto the keys' side: 1e-5 (fp32);
  the short softmax vs torch's: 1e-6.
- cached sine position encodings: bit-exact.
- fused oneDNN linear kernels (bias + activation, residual sum or gating product in the GEMM; the chunked MLP,
  QuickGELU as SiLU with the factor moved into the GEMMs) vs F.linear and the separate ops:
  1e-5 absolute in fp32 (unit-scale values, other summation order); in bf16 1.6e-2 relative plus 1e-2
  absolute, two bf16 steps (the fused kernel rounds once, the separate ops round after every op).
- the fused EVA02 block vs timm's: 1e-5 absolute in fp32 (outputs of unit scale).
- attention as two oneDNN GEMMs per head vs F.scaled_dot_product_attention: 1e-5 absolute in fp32; in bf16, both
  against the fp32 attention of the same bf16 inputs, at most 2x the flash kernel's error plus 2e-3 (logits up to
  26; measured 1.25e-2 against the kernel's 7.9e-3: fp32 scores in both, the probabilities rounded to bf16 before
  the second GEMM; bf16 scores would be off by 8.8e-2).
- the Predictor's eager fp32 network (fused kernels, intermediate masks at the attention resolution) vs the plain
  `model(images)`: 1e-4 absolute on the semantic scores (values up to the number of queries).
- bf16 Predictor (weights converted once, `bf16_network`) vs eager fp32 Predictor: 5e-3 absolute on class
  probabilities (measured: up to 1.3e-3 on the tiny presets, 3.2e-3 on the official-tiny slide); labels can
  then only differ where the best two classes are within 1e-2.
- ONNX Runtime (exported fp32 graph) vs eager fp32 Predictor: 1e-4 absolute on class probabilities.
- torch.compile vs eager fp32 Predictor: 1e-4 absolute on class probabilities.
"""
import numpy as np
import pytest
import torch
from open_clip.transformer import QuickGELU
from timm.layers import RotaryEmbeddingCat
from timm.models.eva import EvaBlock
from torch import nn

from tqdm_core import Predictor, create_model
from tqdm_core.inference.export import InferenceGraph
from tqdm_core.modeling import fused_ops, ms_deform_attn
from tqdm_core.modeling.attention import few_key_attention, multi_head_attention
from tqdm_core.modeling.eva_backbone import fast_block, fusable_block, rope_tables
from tqdm_core.modeling.ms_deform_attn import gather_multi_scale, sample_multi_scale
from tqdm_core.modeling.position_encoding import _encode, sine_position_encoding
from tqdm_core.modeling.semantic_inference import semantic_scores

from tests.core.test_ms_deform_attn import naive_sample

SHAPES = [(3, 4), (5, 2), (6, 7)]
needs_onednn = pytest.mark.skipif(not fused_ops.onednn_dtypes(), reason="this PyTorch build has no oneDNN")


def random_sampling_inputs(batch, queries, heads, head_dim, points, spread, seed):
    """float64 value/positions/weights; positions in pixels, at normalised locations in [-spread, 1 + spread] so
    that many corners fall outside the maps."""
    generator = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, sum(h * w for h, w in SHAPES), heads, head_dim, generator=generator,
                        dtype=torch.float64)
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=generator, dtype=torch.float64)
    sizes = torch.tensor([[w, h] for h, w in SHAPES], dtype=torch.float64)[:, None]  # (L, 1, 2)
    positions = (locations * (1 + 2 * spread) - spread) * sizes
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=generator, dtype=torch.float64)
    return value, positions, weights


@pytest.mark.parametrize("spread", [0.2, 3.0])  # near the border, and far outside (clamping must give zeros)
def test_gather_sampling_equals_naive_and_grid_sample(spread):
    value, positions, weights = random_sampling_inputs(2, 5, 3, 4, 3, spread, seed=0)
    fast = gather_multi_scale(value, SHAPES, positions, weights)
    torch.testing.assert_close(fast, naive_sample(value, SHAPES, positions, weights), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast, sample_multi_scale(value, SHAPES, positions, weights), rtol=1e-9, atol=1e-9)


def test_gather_sampling_gradients_equal_grid_sample():
    value, positions, weights = random_sampling_inputs(2, 4, 2, 3, 2, 0.3, seed=1)
    inputs = [t.requires_grad_() for t in (value, positions, weights)]
    upstream = torch.randn(2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fast = torch.autograd.grad(gather_multi_scale(value, SHAPES, positions, weights), inputs, upstream)
    reference = torch.autograd.grad(sample_multi_scale(value, SHAPES, positions, weights), inputs, upstream)
    for name, got, expected in zip(("value", "positions", "weights"), fast, reference):
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


def test_short_softmax_equals_softmax_even_for_large_logits():
    logits = torch.randn(5, 7, 12) * 30 + torch.tensor([0.0, 500.0, -500.0, 1e4, 0, 0, 0])[None, :, None]
    torch.testing.assert_close(fused_ops.short_softmax(logits), logits.softmax(-1), rtol=0, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize("residual", [False, True])
def test_few_key_attention_equals_multi_head_attention(residual):
    """Pixels attending to a few text tokens with the projections folded onto the keys' side (8 heads x 5 keys
    < 64 channels), against the plain attention."""
    torch.manual_seed(12)
    attention = nn.MultiheadAttention(64, 8, batch_first=True)
    query, memory = torch.randn(2, 300, 64), torch.randn(2, 5, 64)
    extra = {"residual": torch.randn(2, 300, 64)} if residual else {}
    with torch.no_grad():
        plain = multi_head_attention(attention, query, memory + 1, memory, **extra)
        with fused_ops.fast_kernels():
            folded = multi_head_attention(attention, query, memory + 1, memory, **extra)
            assert torch.equal(folded, few_key_attention(attention, query, memory + 1, memory, **extra))
    torch.testing.assert_close(folded, plain, rtol=0, atol=1e-5)


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


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", [None, nn.ReLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(),
                                        QuickGELU()])
def test_fused_linear_equals_separate_ops(dtype, activation):
    if dtype not in fused_ops.onednn_dtypes():
        pytest.skip("oneDNN computes bf16 only on CPUs with AVX-512")
    generator = torch.Generator().manual_seed(7)
    layer = nn.Linear(256, 192).to(dtype)
    x = torch.randn(3, 50, 256, generator=generator).to(dtype)
    residual = torch.randn(3, 50, 192, generator=generator).to(dtype)
    tolerance = {"rtol": 0, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1e-2}
    with torch.no_grad():
        plain = fused_ops.linear(x, layer, activation=activation)
        plain_sum = fused_ops.linear(x, layer, residual=residual)
        plain_product = fused_ops.linear(x, layer, product=residual)
        with fused_ops.fast_kernels():
            assert fused_ops.fused(x)
            fused = fused_ops.linear(x, layer, activation=activation)
            fused_sum = fused_ops.linear(x, layer, residual=residual)
            fused_product = fused_ops.linear(x, layer, product=residual)
    reference = layer(x) if activation is None else activation(layer(x))
    assert torch.equal(plain, reference) and torch.equal(plain_sum, residual + layer(x))  # the plain ops, as before
    assert torch.equal(plain_product, residual * layer(x))
    assert fused.dtype == dtype and fused.shape == (3, 50, 192)
    torch.testing.assert_close(fused, plain, **tolerance)
    torch.testing.assert_close(fused_sum, plain_sum, **tolerance)
    torch.testing.assert_close(fused_product, plain_product, **tolerance)


@needs_onednn
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation", [nn.ReLU(), QuickGELU()])
def test_chunked_feed_forward_equals_plain(monkeypatch, residual, activation):
    """Rows go through the fused MLP in chunks (here 7 rows, the hidden width 64 x 4 bytes x 7 rows of budget);
    QuickGELU runs as SiLU with the 1.702 moved into the GEMMs."""
    monkeypatch.setattr(fused_ops, "HIDDEN_CHUNK_BYTES", 64 * 4 * 7)
    generator = torch.Generator().manual_seed(11)
    first, second = nn.Linear(32, 64), nn.Linear(64, 32)
    x = torch.randn(2, 25, 32, generator=generator)
    extra = {"residual": torch.randn(2, 25, 32, generator=generator)} if residual else {}
    with torch.no_grad():
        plain = fused_ops.feed_forward(x, first, activation, second, **extra)
        with fused_ops.fast_kernels():
            chunked = fused_ops.feed_forward(x, first, activation, second, **extra)
    torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-5)


def test_fused_kernels_only_where_they_apply():
    x = torch.randn(4, 8)
    assert not fused_ops.fused(x)  # outside fast_kernels()
    with fused_ops.fast_kernels():
        assert fused_ops.fused(x) == bool(fused_ops.onednn_dtypes())
        assert not fused_ops.fused(x.double())
        assert not fused_ops.fused(x.requires_grad_())  # training: autograd needs the plain ops
        with fused_ops.fast_kernels(False):
            assert not fused_ops.fused(x.detach())
    with pytest.raises(ValueError, match="not several"):
        fused_ops.linear(x, nn.Linear(8, 8), activation=nn.ReLU(), residual=x)


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_attention_equals_scaled_dot_product_attention(monkeypatch, dtype):
    """Strided q/k/v views of one packed projection, as in the ViT blocks; score rows in chunks of 7 (a budget of
    7 rows of 45 keys), so the last chunk is partial."""
    if dtype not in fused_ops.onednn_dtypes():
        pytest.skip("oneDNN computes bf16 only on CPUs with AVX-512")
    monkeypatch.setattr(fused_ops, "SCORES_CHUNK_BYTES", 45 * 4 * 7)  # fp32 scores
    monkeypatch.setattr(fused_ops, "gemm_attention_pays", lambda: True)  # the GEMM path on every CPU
    generator = torch.Generator().manual_seed(5)
    qkv = torch.randn(2, 45, 3, 4, 32, generator=generator).permute(2, 0, 3, 1, 4)  # (3, B, heads, N, D) views
    q, k, v = (qkv[0] * 2.5).to(dtype), (qkv[1] * 2.5).to(dtype), qkv[2].to(dtype)  # logits up to 26
    sdpa = torch.nn.functional.scaled_dot_product_attention
    reference = sdpa(q.float(), k.float(), v.float())
    with torch.no_grad(), fused_ops.fast_kernels():
        fused = fused_ops.attention(q, k, v)
    assert fused.dtype == dtype and fused.shape == (2, 4, 45, 32)
    assert fused.transpose(1, 2).is_contiguous()  # the callers' transpose(1, 2).reshape is a view
    flash_error = (sdpa(q, k, v).float() - reference).abs().max().item()
    atol = 1e-5 if dtype == torch.float32 else 2 * flash_error + 2e-3
    torch.testing.assert_close(fused.float(), reference, rtol=0, atol=atol)
    assert torch.equal(fused_ops.attention(q, k, v), sdpa(q, k, v))  # outside fast_kernels(): the plain kernel
    monkeypatch.setattr(fused_ops, "gemm_attention_pays", lambda: False)  # e.g. AVX2: the plain kernel too
    with torch.no_grad(), fused_ops.fast_kernels():
        assert torch.equal(fused_ops.attention(q, k, v), sdpa(q, k, v))


@needs_onednn
def test_fast_eva_block_equals_timm_block():
    """An EVA02-L-shaped block (separate q/k/v, 2-D RoPE after a CLS token, SwiGLU with inner LayerNorm), small."""
    torch.manual_seed(10)
    block = EvaBlock(64, 4, qkv_fused=False, swiglu_mlp=True, scale_mlp=True, mlp_ratio=4 * 2 / 3).eval()
    assert fusable_block(block)
    rope = RotaryEmbeddingCat(64 // 4, in_pixels=False, feat_shape=(5, 6), ref_feat_shape=(4, 4)).get_embed([5, 6])
    x = torch.randn(2, 1 + 5 * 6, 64)
    with torch.no_grad():
        reference = block(x, rope=rope)
        with fused_ops.fast_kernels():
            fast = fast_block(block, x, rope_tables(rope, 1, x.dtype))
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-vit-tiny-official"])
def test_predictor_network_matches_the_plain_model(name):
    """The Predictor's eager fp32 network (fused kernels, no auxiliary predictions, intermediate masks from the
    resized mask feature) against the plain training-time forward."""
    model = create_model(name, pretrained=None, seed=0).eval()
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        outputs = model(images)
        reference = semantic_scores(outputs["pred_logits"], outputs["pred_masks"])
        fast = InferenceGraph(model=model, fast_kernels=True)(images)
        inference = model(images, auxiliary=False)
    assert inference["aux_outputs"] == [] and len(outputs["aux_outputs"]) == len(model.transformer_decoder.layers)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("name", ["tqdm-tiny-rn", "tqdm-tiny-vit", "tqdm-clip-vit-tiny-official"])
@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_bf16_predictor_matches_eager_fp32(name, mode):
    """tqdm-clip-vit-tiny-official has QuickGELU: it checks the SiLU fold of `bf16_network` too."""
    if torch.bfloat16 not in fused_ops.onednn_dtypes():
        pytest.skip("bf16 inference needs a CPU with AVX-512 for oneDNN")
    model = create_model(name, pretrained=None, seed=0)
    image = random_image(96, 160, seed=9)
    options = {"mode": mode, "window": 96, "stride": 64}
    fp32 = Predictor(model, precision="fp32", **options).predict(image, return_probabilities=True)
    bf16 = Predictor(model, precision="bf16", **options).predict(image, return_probabilities=True)
    np.testing.assert_allclose(bf16.probabilities, fp32.probabilities, rtol=0, atol=5e-3)


def test_bf16_predictor_without_onednn_bf16_runs_the_plain_ops(monkeypatch):
    """A CPU without AVX-512 has no oneDNN bf16 kernels: the converted bf16 network then runs the plain ops
    (slowly) and still matches fp32 within the bf16 tolerance."""
    model = create_model("tqdm-tiny-vit", pretrained=None, seed=0)
    image = random_image(64, 96, seed=13)
    fp32 = Predictor(model, precision="fp32").predict(image, return_probabilities=True)
    monkeypatch.setattr(fused_ops, "onednn_dtypes", lambda: (torch.float32,))
    bf16 = Predictor(model, precision="bf16").predict(image, return_probabilities=True)
    np.testing.assert_allclose(bf16.probabilities, fp32.probabilities, rtol=0, atol=5e-3)


def random_image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.timeout(300)
def test_onnxruntime_matches_eager_fp32(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    image = random_image(60, 90, seed=5)  # padded to 64x96 for the model: exercises crop and resize back
    eager = Predictor(model, precision="fp32").predict(image, return_probabilities=True)
    onnx = Predictor(model, precision="fp32", runtime="onnxruntime").predict(image, return_probabilities=True)
    np.testing.assert_allclose(onnx.probabilities, eager.probabilities, rtol=0, atol=1e-4)


@pytest.mark.timeout(600)
def test_torch_compile_matches_eager_fp32():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    image = random_image(64, 64, seed=6)
    eager = Predictor(model, precision="fp32").predict(image, return_probabilities=True)
    compiled = Predictor(model, precision="fp32", compile=True).predict(image, return_probabilities=True)
    np.testing.assert_allclose(compiled.probabilities, eager.probabilities, rtol=0, atol=1e-4)


def test_runtime_arguments_are_checked():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    with pytest.raises(ValueError, match="runtime must be one of"):
        Predictor(model, runtime="tensorrt")
    with pytest.raises(ValueError, match="runs fp32 on the CPU"):
        Predictor(model, runtime="onnxruntime", precision="bf16")
