"""EVA02-L/14 at any input size: the rotary table follows the patch grid (whole-image mode on non-512 frames)."""
import pytest
import torch
from timm.layers import RotaryEmbeddingCat

from tqdm_core import create_model
from tqdm_core.modeling import fused_ops
from tqdm_core.modeling.eva_backbone import rope_for_grid


def test_rope_for_another_grid_equals_a_module_built_for_it():
    """The trunk caches the 36x36 table; other grids get exactly what timm builds for them (reference 16x16)."""
    settings = dict(dim=64, in_pixels=False, ref_feat_shape=[16, 16])
    cached = RotaryEmbeddingCat(**settings, feat_shape=[36, 36])
    assert torch.equal(rope_for_grid(cached, 36, 36), cached.get_embed())
    for grid in ([25, 34], [36, 73]):
        expected = RotaryEmbeddingCat(**settings, feat_shape=grid).get_embed()
        assert torch.equal(rope_for_grid(cached, *grid), expected), grid
    assert not torch.equal(rope_for_grid(cached, 25, 34)[:4], cached.get_embed()[:4])  # positions rescaled


@pytest.fixture(scope="module")
def eva_backbone():
    torch.manual_seed(0)
    return create_model("tqdm-eva02-l14", pretrained=None, seed=0).backbone.eval()


def test_eva_backbone_runs_a_non_square_grid_fast_and_plain(eva_backbone):
    """224x448 is a 16x32 patch grid, not the 36x36 the trunk's table was cached for (this crashed before)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = torch.randn(1, 3, 224, 448, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            plain = eva_backbone(images)
            with fused_ops.fast_kernels():
                fast = eva_backbone(images)
    finally:
        torch.set_num_threads(threads)
    assert plain.dense_embeddings.shape[-2:] == (16, 32)
    assert [tuple(f.shape[-2:]) for f in plain.features] == [(64, 128), (32, 64), (16, 32), (8, 16)]
    torch.testing.assert_close(fast.dense_embeddings, plain.dense_embeddings, rtol=1e-4, atol=1e-4)
    for fast_level, plain_level in zip(fast.features, plain.features):
        torch.testing.assert_close(fast_level, plain_level, rtol=1e-4, atol=1e-4)
