"""Multi-scale deformable attention against a naive per-point bilinear reference."""
import math

import torch

from tqdm_core.modeling.ms_deform_attn import MultiScaleDeformableAttention, sample_multi_scale


def naive_sample(value, shapes, positions, weights):
    """Loop over every batch, query, head, level and point; bilinear interpolation written out by hand.

    A position (x, y) in pixels (pixel centres at integer + 0.5, align_corners=False) has the pixel-index
    coordinates (x - 0.5, y - 0.5); the four neighbours get weights (1 - dx)(1 - dy), dx(1 - dy), ..., and
    neighbours outside the map contribute zero.
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = positions.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads, head_dim, dtype=torch.float64)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lvl, (height, width) in enumerate(shapes):
                    grid = value[b, starts[lvl]:starts[lvl + 1], m].reshape(height, width, head_dim)
                    for p in range(points):
                        x = positions[b, q, m, lvl, p, 0].item() - 0.5
                        y = positions[b, q, m, lvl, p, 1].item() - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(head_dim, dtype=torch.float64)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < height and 0 <= xx < width:
                                    sample += wy * wx * grid[yy, xx].double()
                        out[b, q, m] += weights[b, q, m, lvl, p].double() * sample
    return out.reshape(batch, queries, heads * head_dim)


def test_sampling_matches_naive_reference():
    torch.manual_seed(0)
    shapes = [(3, 4), (5, 2), (6, 7)]
    batch, queries, heads, head_dim, points = 2, 5, 3, 4, 3
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, head_dim, dtype=torch.float64)
    # Positions deliberately reach outside the maps to exercise the zero padding.
    sizes = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64)[:, None]  # (L, 1, 2)
    positions = (torch.rand(batch, queries, heads, len(shapes), points, 2, dtype=torch.float64) * 1.4 - 0.2) * sizes
    weights = torch.rand(batch, queries, heads, len(shapes), points, dtype=torch.float64)
    fast = sample_multi_scale(value, shapes, positions, weights)
    reference = naive_sample(value, shapes, positions, weights)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-9)


def test_module_initialisation_and_shapes():
    torch.manual_seed(1)
    attention = MultiScaleDeformableAttention(embed_dim=32, heads=4, levels=2, points=3)
    # Zero offset weights: every query samples the same per-head direction grid, scaled by point index.
    bias = attention.sampling_offsets.bias.view(4, 2, 3, 2)
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[0, 0, :, 1], torch.zeros(3))
    assert float(attention.attention_weights.weight.detach().abs().sum()) == 0.0
    shapes = [(4, 4), (2, 2)]
    query = torch.randn(2, 20, 32)
    reference = attention.reference_positions(torch.rand(1, 20, 2), shapes)
    out = attention(query, reference, torch.randn(2, 20, 32), shapes)
    assert out.shape == (2, 20, 32)
    assert torch.isfinite(out).all()


def test_reference_positions_in_pixels_of_every_level():
    """Reference (x, y) = (0.25, 0.5) on levels (H, W) = (4, 8) and (2, 2): pixels (2, 2) and (0.5, 1), repeated
    for each of 2 heads and 3 points in the layout of the offsets projection (heads, levels, points, xy)."""
    attention = MultiScaleDeformableAttention(embed_dim=8, heads=2, levels=2, points=3)
    positions = attention.reference_positions(torch.tensor([[[0.25, 0.5]]]), [(4, 8), (2, 2)])
    assert positions.shape == (1, 1, 2 * 2 * 3 * 2) and positions.dtype == torch.float32
    expected = torch.tensor([[2.0, 2.0], [0.5, 1.0]])[None, :, None].expand(2, 2, 3, 2)  # (heads, L, P, xy)
    torch.testing.assert_close(positions.view(2, 2, 3, 2), expected)


def test_module_samples_at_reference_plus_offset_with_softmax_weights():
    """The module equals the naive sampler at positions reference + offset (pixels) with softmax weights."""
    torch.manual_seed(2)
    attention = MultiScaleDeformableAttention(embed_dim=8, heads=2, levels=2, points=3).double()
    for layer in (attention.sampling_offsets, attention.attention_weights):
        torch.nn.init.normal_(layer.weight, std=0.5)
    shapes = [(4, 5), (2, 3)]
    query, value = torch.randn(1, 7, 8, dtype=torch.float64), torch.randn(1, 26, 8, dtype=torch.float64)
    reference = attention.reference_positions(torch.rand(1, 7, 2), shapes).double()
    out = attention(query, reference, value, shapes)
    positions = (reference + attention.sampling_offsets(query)).view(1, 7, 2, 2, 3, 2)
    weights = attention.attention_weights(query).view(1, 7, 2, 6).softmax(-1).view(1, 7, 2, 2, 3)
    sampled = naive_sample(attention.value_proj(value).view(1, 26, 2, 4), shapes, positions, weights)
    torch.testing.assert_close(out, attention.output_proj(sampled.to(out.dtype)), rtol=1e-9, atol=1e-9)
