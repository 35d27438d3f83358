"""Point sampling for the mask losses: bilinear sampling at normalised points and uncertainty-driven selection."""
import pytest
import torch

from tqdm_core.losses.point_sampling import logit_uncertainty, point_sample, sample_uncertain_points


def test_point_sample_reads_pixel_centres_and_interpolates_between_them():
    """Map (1, 1, 2, 3) with values 0..5 row-major.

    With align_corners=False pixel (i, j) of an (H, W) map has its centre at x = (j + 0.5) / W, y = (i + 0.5) / H.
    Centres of pixels (0, 0), (1, 2), (0, 1): values 0, 5, 1. The point halfway between the centres of (0, 0) and
    (0, 1), x = 1/3, y = 1/4, gives (0 + 1) / 2 = 0.5; the centre of the map, x = 1/2, y = 1/2, lies halfway
    between the centres of (0, 1) and (1, 1): (1 + 4) / 2 = 2.5.
    """
    features = torch.arange(6.0).view(1, 1, 2, 3)
    points = torch.tensor([[[1 / 6, 1 / 4], [5 / 6, 3 / 4], [3 / 6, 1 / 4], [1 / 3, 1 / 4], [1 / 2, 1 / 2]]])
    sampled = point_sample(features, points)
    assert sampled.shape == (1, 1, 5)
    torch.testing.assert_close(sampled[0, 0], torch.tensor([0.0, 5.0, 1.0, 0.5, 2.5]))


def test_point_sample_pads_with_zeros_at_the_border():
    """A constant map of ones sampled at the corner (0, 0).

    The corner is half a pixel up and left of the centre of pixel (0, 0): its four bilinear neighbours weigh 1/4
    each and only pixel (0, 0) lies inside the map, the three others are zero padding: 1/4. Halfway along the top
    edge of a 2-pixel-wide map the two in-map neighbours weigh 1/4 each: 1/2.
    """
    features = torch.ones(1, 1, 2, 2)
    sampled = point_sample(features, torch.tensor([[[0.0, 0.0], [0.5, 0.0]]]))
    torch.testing.assert_close(sampled[0, 0], torch.tensor([0.25, 0.5]))


def test_point_sample_gradient_reaches_the_sampled_pixels_only():
    """Sampling the centre of pixel (1, 0) of a 2x2 map reads that pixel with weight 1: its gradient is 1, others 0."""
    features = torch.zeros(1, 1, 2, 2, requires_grad=True)
    point_sample(features, torch.tensor([[[0.25, 0.75]]])).sum().backward()
    torch.testing.assert_close(features.grad[0, 0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


def test_point_sample_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same N"):
        point_sample(torch.zeros(2, 1, 4, 4), torch.zeros(3, 5, 2))


def test_logit_uncertainty_is_highest_on_the_decision_boundary():
    torch.testing.assert_close(logit_uncertainty(torch.tensor([-3.0, 0.0, 2.0])), torch.tensor([-3.0, 0.0, -2.0]))


def _left_uncertain_logits() -> torch.Tensor:
    """(2, 1, 8, 8) logits: columns 0..3 are 0 (uncertain), columns 4..7 are +10 / -10 (confident).

    Bilinear sampling returns exactly 0 wherever both horizontal neighbours are in columns 0..3 or in the zero
    padding, i.e. for pixel coordinate x * 8 - 0.5 <= 3, x <= 0.4375. Right of that the value is 10 * w with
    w >= 1/4 (a corner with zero padding), so |logit| >= 2.5: strictly less uncertain.
    """
    logits = torch.zeros(2, 1, 8, 8)
    logits[0, :, :, 4:] = 10.0
    logits[1, :, :, 4:] = -10.0
    return logits


def test_importance_sampling_picks_the_most_uncertain_points():
    """importance_sample_ratio=1: all points are the most uncertain candidates.

    64 points from 8 x 64 = 512 uniform candidates per mask; 43.75 % of the candidates (about 224) fall in the
    fully uncertain region x <= 0.4375 where the uncertainty is maximal (0), far more than 64, so every chosen point
    lies there. A uniform draw of 64 points would put about 36 of them on the right.
    """
    generator = torch.Generator().manual_seed(0)
    points = sample_uncertain_points(
        _left_uncertain_logits(), num_points=64, oversample_ratio=8.0, importance_sample_ratio=1.0, generator=generator
    )
    assert points.shape == (2, 64, 2)
    assert bool((points[..., 0] <= 0.4375).all())
    assert bool(((points >= 0) & (points <= 1)).all())


def test_importance_sampling_mixes_in_uniform_points():
    """importance_sample_ratio=0.75 with 64 points: int(48.0) = 48 uncertain points, then 16 uniform ones.

    The 48 uncertain points all lie in x <= 0.4375 (see ``_left_uncertain_logits``); the 16 uniform points are
    anywhere in [0, 1]^2, so some of the 2 x 16 lie right of 0.4375 (all 32 landing left has probability
    0.4375^32, about 3e-12; the seed is fixed anyway).
    """
    generator = torch.Generator().manual_seed(1)
    points = sample_uncertain_points(
        _left_uncertain_logits(), num_points=64, oversample_ratio=3.0, importance_sample_ratio=0.75, generator=generator
    )
    assert bool((points[:, :48, 0] <= 0.4375).all())
    assert bool((points[:, 48:, 0] > 0.4375).any())


def test_sampled_points_carry_no_gradient():
    """Point coordinates are a sampling decision made under no_grad, even when the logits require gradients."""
    logits = torch.randn(3, 1, 5, 5, requires_grad=True)
    points = sample_uncertain_points(logits, num_points=10, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert points.shape == (3, 10, 2)
    assert not points.requires_grad and points.grad_fn is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_points": 0, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75}, "num_points"),
        ({"num_points": 8, "oversample_ratio": 0.5, "importance_sample_ratio": 0.75}, "oversample_ratio"),
        ({"num_points": 8, "oversample_ratio": 3.0, "importance_sample_ratio": 1.5}, "importance_sample_ratio"),
    ],
)
def test_sampling_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_uncertain_points(torch.zeros(1, 1, 4, 4), **kwargs)
