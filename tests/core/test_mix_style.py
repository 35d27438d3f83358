"""MixStyle: training-only mixing of per-channel feature statistics between the images of a batch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tqdm_core.modeling.mix_style import MixStyle, attach_mix_style


def styled_batch() -> torch.Tensor:
    """Four (3, 8, 8) feature maps whose per-channel means and spreads differ a lot between images."""
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(4, 3, 8, 8, generator=generator)
    means = torch.tensor([-5.0, 0.0, 3.0, 10.0]).view(4, 1, 1, 1)
    spreads = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    return content * spreads + means


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return features.mean(dim=(2, 3)), (features.var(dim=(2, 3)) + 1e-6).sqrt()


def run_hook(hook: MixStyle, features: torch.Tensor, *, training: bool = True) -> torch.Tensor:
    module = nn.Identity().train(training)
    result = hook(module, (features,), features)
    return features if result is None else result


def test_mixed_statistics_are_convex_combinations_and_the_content_is_kept():
    features = styled_batch()
    torch.manual_seed(1)
    mixed = run_hook(MixStyle("layer", probability=1.0, alpha=0.1), features)
    mean, std = statistics(features)
    mixed_mean, mixed_std = statistics(mixed)
    assert not torch.allclose(mixed_mean, mean, atol=1e-2)  # some image took another's style
    for image in range(4):
        # Each image's new (mean, std) is lambda * its own + (1 - lambda) * one partner's, the same lambda and partner
        # for every channel: find them and check all channels at once.
        fits = []
        for partner in range(4):
            spread = mean[image] - mean[partner]
            weight = 1.0 if spread.abs().max() < 1e-6 else ((mixed_mean[image] - mean[partner]) / spread).mean()
            expected_mean = weight * mean[image] + (1 - weight) * mean[partner]
            expected_std = weight * std[image] + (1 - weight) * std[partner]
            fits.append(0 <= weight <= 1 and torch.allclose(mixed_mean[image], expected_mean, atol=1e-4)
                        and torch.allclose(mixed_std[image], expected_std, atol=1e-4))
        assert any(fits), f"image {image}: its statistics are no mixture of two images' statistics"
    normalized = (features - mean[..., None, None]) / std[..., None, None]
    mixed_normalized = (mixed - mixed_mean[..., None, None]) / mixed_std[..., None, None]
    torch.testing.assert_close(mixed_normalized, normalized, atol=1e-4, rtol=1e-4)


def test_images_of_one_style_are_left_as_they_are():
    single_style = torch.randn(1, 3, 8, 8).expand(4, -1, -1, -1).contiguous()
    torch.manual_seed(2)
    torch.testing.assert_close(run_hook(MixStyle("layer", probability=1.0, alpha=0.1), single_style), single_style,
                               atol=1e-5, rtol=1e-5)


def test_eval_mode_and_probability_zero_change_nothing():
    features = styled_batch()
    assert MixStyle("layer", probability=1.0, alpha=0.1)(nn.Identity().eval(), (features,), features) is None
    assert MixStyle("layer", probability=0.0, alpha=0.1)(nn.Identity().train(), (features,), features) is None


def test_probability_is_the_share_of_calls_that_mix():
    features = styled_batch()
    hook = MixStyle("layer", probability=0.3, alpha=0.1)
    torch.manual_seed(3)
    mixed_calls = sum(not torch.equal(run_hook(hook, features), features) for _ in range(400))
    assert 90 <= mixed_calls <= 150  # binomial(400, 0.3): mean 120, standard deviation 9.2


def test_low_precision_features_keep_their_dtype_and_gradients_reach_the_input():
    features = styled_batch().to(torch.bfloat16).requires_grad_()
    torch.manual_seed(4)
    mixed = run_hook(MixStyle("layer", probability=1.0, alpha=0.1), features)
    assert mixed.dtype == torch.bfloat16
    mixed.float().square().sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad.float()).all() and features.grad.abs().sum() > 0


def test_a_layer_without_a_feature_map_is_refused_with_its_name():
    tokens = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"feature map from 'blocks.0', got \(2, 5, 8\); name convolutional stages"):
        MixStyle("blocks.0", probability=1.0, alpha=0.1)(nn.Identity().train(), (tokens,), tokens)


@pytest.mark.parametrize("probability, alpha, message", [
    (1.5, 0.1, r"probability must be in \[0, 1\], got 1.5"),
    (0.5, 0.0, "alpha must be > 0, got 0.0"),
])
def test_bad_settings_are_refused(probability, alpha, message):
    with pytest.raises(ValueError, match=message):
        MixStyle("layer", probability=probability, alpha=alpha)


def test_attach_hooks_the_named_modules_and_refuses_unknown_names():
    model = nn.Sequential()
    model.add_module("backbone", nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)))
    handles = attach_mix_style(model, ["backbone.0"], probability=1.0, alpha=0.1)
    assert len(handles) == 1 and len(model.backbone[0]._forward_hooks) == 1 and not model.backbone[1]._forward_hooks
    images = styled_batch()
    model.eval()
    eval_output = model(images)
    handles[0].remove()
    torch.testing.assert_close(model(images), eval_output, atol=0, rtol=0)  # eval: the hook did nothing
    with pytest.raises(ValueError, match=r"names \['backbone.7'\], which the model does not have; its backbone "
                                         r"modules: \['backbone.0', 'backbone.1'\]"):
        attach_mix_style(model, ["backbone.7"], probability=1.0, alpha=0.1)
