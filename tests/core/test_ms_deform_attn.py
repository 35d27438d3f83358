"""Multi-scale deformable attention against a naive per-point bilinear reference."""
import math

import torch

from tqdm_core.modeling.ms_deform_attn import MultiScaleDeformableAttention, sample_multi_scale


def naive_sample(value, shapes, locations, weights):
    """Loop over every batch, query, head, level and point; bilinear interpolation written out by hand.

    A location (x, y) in [0, 1] maps to pixel coordinates (x * W - 0.5, y * H - 0.5) (pixel centres at
    integer + 0.5, align_corners=False); the four neighbours get weights (1 - dx)(1 - dy), dx(1 - dy), ...,
    and neighbours outside the map contribute zero.
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
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
                        x = locations[b, q, m, lvl, p, 0].item() * width - 0.5
                        y = locations[b, q, m, lvl, p, 1].item() * height - 0.5
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
    # Locations deliberately reach outside [0, 1] to exercise the zero padding.
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes), points, dtype=torch.float64)
    fast = sample_multi_scale(value, shapes, locations, weights)
    reference = naive_sample(value, shapes, locations, weights)
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
    reference = torch.rand(1, 20, 2)
    out = attention(query, reference, torch.randn(2, 20, 32), shapes)
    assert out.shape == (2, 20, 32)
    assert torch.isfinite(out).all()
