"""The tqdm losses against hand-derived values on tiny tensors (METHOD.md section 6)."""
import math

import pytest
import torch
import torch.distributed as dist

from tqdm_core.losses import (
    LossConfig,
    MaskClassificationLoss,
    TqdmLoss,
    language_regularization,
    pixel_text_scores,
    vision_language_regularization,
    vision_regularization,
)
from tqdm_core.losses.mask_classification_loss import (
    dice_loss,
    fixed_matching_targets,
    global_num_masks,
    sigmoid_bce_loss,
)

LN3 = math.log(3.0)


def _pixel_centres(num_masks: int, height: int, width: int) -> torch.Tensor:
    """Points injected instead of the importance sampler's: every pixel centre of an (H, W) map, row-major,
    (M, HW, 2)."""
    ys, xs = torch.meshgrid(
        (torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width, indexing="ij"
    )
    # (H, W) x 2 -> (HW, 2) -> (M, HW, 2)
    return torch.stack([xs, ys], dim=-1).view(1, height * width, 2).expand(num_masks, -1, -1).clone()


# The one positive mask of TWO_CLASS_LABELS (class 0) at its four pixel centres.
CENTRES = [_pixel_centres(1, 2, 2)]


def _two_class_prediction() -> dict[str, torch.Tensor]:
    """K = 2 classes, one image, masks at the 2x2 label resolution.

    Query 0 (class 0): class logits (0, 0, 0); mask logits [[ln 3, ln 3], [0, -ln 3]], i.e. sigmoid
    p = [[3/4, 3/4], [1/2, 1/4]]. Query 1 (class 1): class logits (0, 0, ln 2); mask logits 7 everywhere.
    """
    pred_logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2.0)]]])
    pred_masks = torch.tensor([[[[LN3, LN3], [0.0, -LN3]], [[7.0, 7.0], [7.0, 7.0]]]])
    return {"pred_logits": pred_logits.requires_grad_(), "pred_masks": pred_masks.requires_grad_()}


# Labels [[0, 0], [255, 0]]: class 0 present (3 pixels), class 1 absent, one ignore pixel.
TWO_CLASS_LABELS = torch.tensor([[[0, 0], [255, 0]]])


def test_fixed_matching_assigns_query_k_to_class_k_or_no_object():
    """K = 3. Image 0 holds classes 0 and 2 (and ignore), image 1 only ignore.

    Present: [[T, F, T], [F, F, F]]; class targets: the class id where present, else K = 3 ("no object").
    """
    labels = torch.tensor([[[0, 2, 255]], [[255, 255, 255]]])
    class_targets, present = fixed_matching_targets(labels, 3)
    assert present.tolist() == [[True, False, True], [False, False, False]]
    assert class_targets.tolist() == [[0, 3, 2], [3, 3, 3]]


def test_class_loss_weights_no_object_by_one_tenth():
    """Class cross-entropy with no-object weight 0.1 as a weighted mean.

    Query 0, target class 0, logits (0, 0, 0): CE = ln 3, weight 1.
    Query 1, target "no object" (index 2), logits (0, 0, ln 2): p = 2 / (1 + 1 + 2) = 1/2, CE = ln 2, weight 0.1.
    Weighted mean: (ln 3 + 0.1 ln 2) / 1.1 = 1.06175; times lambda_cls = 2.
    """
    losses = MaskClassificationLoss()(_two_class_prediction(), TWO_CLASS_LABELS, point_coords=CENTRES)
    expected = (math.log(3.0) + 0.1 * math.log(2.0)) / 1.1
    assert losses["loss_cls"].item() == pytest.approx(2.0 * expected, rel=1e-6)


def test_mask_losses_on_every_pixel_treat_ignore_as_background():
    """BCE and Dice of query 0 on the four pixel centres of the 2x2 labels [[0, 0], [255, 0]].

    Ground truth of class 0 at the centres: g = (1, 1, 0, 1): the ignore pixel is a negative. Predicted
    p = (3/4, 3/4, 1/2, 1/4). Query 1 (class 1 absent) is not a positive and does not enter the mask losses.
    num_masks = 1, num_points = 4.
    BCE: [-ln 3/4 - ln 3/4 - ln 1/2 - ln 1/4] / (1 x 4) = [2 ln(4/3) + 3 ln 2] / 4 = 0.66370.
    Dice: sum(p g) = 1.75, sum(p) = 2.25, sum(g) = 3 -> 1 - (2 x 1.75 + 1) / (2.25 + 3 + 1) = 1 - 4.5 / 6.25 = 0.28.
    Weighted: 5 x BCE, 5 x Dice.
    """
    losses = MaskClassificationLoss()(_two_class_prediction(), TWO_CLASS_LABELS, point_coords=CENTRES)
    expected_bce = (2.0 * math.log(4.0 / 3.0) + 3.0 * math.log(2.0)) / 4.0
    assert losses["loss_mask"].item() == pytest.approx(5.0 * expected_bce, rel=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(5.0 * 0.28, rel=1e-6)


def test_every_prediction_layer_is_supervised_and_summed():
    """Two auxiliary layers equal to the final one: d0.* and d1.* equal the final terms, total = 3 x (sum of 3)."""
    outputs = _two_class_prediction()
    outputs["aux_outputs"] = [_two_class_prediction(), _two_class_prediction()]
    losses = MaskClassificationLoss()(outputs, TWO_CLASS_LABELS, point_coords=CENTRES * 3)
    names = ["loss_cls", "loss_mask", "loss_dice"]
    assert list(losses) == [f"d0.{n}" for n in names] + [f"d1.{n}" for n in names] + names + ["total"]
    for name in names:
        assert losses[f"d0.{name}"].item() == pytest.approx(losses[name].item())
        assert losses[f"d1.{name}"].item() == pytest.approx(losses[name].item())
    final_sum = sum(losses[n].item() for n in names)
    assert losses["total"].item() == pytest.approx(3.0 * final_sum, rel=1e-6)


def test_injected_points_are_used_per_layer_and_checked():
    """Layer d0 gets the centre of pixel (0, 0) only (p = 3/4, g = 1): BCE = ln(4/3), Dice = 1 - 2.5/2.75 = 1/11;
    the final layer keeps the four centres. Points for another number of layers or positives are refused."""
    outputs = _two_class_prediction()
    outputs["aux_outputs"] = [_two_class_prediction()]
    corner = torch.tensor([[[0.25, 0.25]]])  # (M=1, P=1, 2): (x, y) of the centre of pixel (0, 0)
    losses = MaskClassificationLoss()(outputs, TWO_CLASS_LABELS, point_coords=[corner, CENTRES[0]])
    assert losses["d0.loss_mask"].item() == pytest.approx(5.0 * math.log(4.0 / 3.0), rel=1e-6)
    assert losses["d0.loss_dice"].item() == pytest.approx(5.0 / 11.0, rel=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(5.0 * 0.28, rel=1e-6)
    with pytest.raises(ValueError, match="one \\(M, P, 2\\) tensor per prediction layer \\(2\\) with M = 1"):
        MaskClassificationLoss()(outputs, TWO_CLASS_LABELS, point_coords=CENTRES)
    with pytest.raises(ValueError, match="got shapes \\[\\(2, 4, 2\\), \\(1, 4, 2\\)\\]"):
        MaskClassificationLoss()(outputs, TWO_CLASS_LABELS, point_coords=[_pixel_centres(2, 2, 2), CENTRES[0]])


def test_bce_of_zero_logits_is_ln2_at_any_points():
    """With mask logits 0, p = 1/2 at every sampled point whatever its target: BCE = ln 2 per point, the loss is
    ln 2 x num_masks x num_points / (num_masks x num_points) = ln 2, through the real importance sampler.
    Two positive queries (both classes present), 5 x ln 2 = 3.4657 after weighting.
    """
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 4, 4)}
    labels = torch.zeros(1, 16, 16, dtype=torch.int64)
    labels[:, 8:] = 1
    losses = MaskClassificationLoss(num_points=50)(outputs, labels)
    assert losses["loss_mask"].item() == pytest.approx(5.0 * math.log(2.0), rel=1e-6)


def test_sigmoid_bce_on_given_points():
    """Two masks, four points each, num_masks = 2.

    Mask A: logits 0 (p = 1/2), any targets: 4 ln 2. Mask B: logits ln 3 (p = 3/4), targets (1, 0, 0, 0):
    ln(4/3) + 3 ln 4. Loss = [4 ln 2 + ln(4/3) + 3 ln 4] / (2 x 4) = 0.90239. With num_masks = 3 (positives of
    other processes included) the divisor is 3 x 4.
    """
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [LN3, LN3, LN3, LN3]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    numerator = 4 * math.log(2.0) + math.log(4.0 / 3.0) + 3 * math.log(4.0)
    assert sigmoid_bce_loss(logits, targets, torch.tensor(2.0)).item() == pytest.approx(numerator / 8, rel=1e-6)
    assert sigmoid_bce_loss(logits, targets, torch.tensor(3.0)).item() == pytest.approx(numerator / 12, rel=1e-6)


def test_naive_dice_on_given_points():
    """Same two masks as the BCE test.

    Mask A: p = 1/2 x 4, g = (1, 1, 0, 0): sum(pg) = 1, sum(p) = 2, sum(g) = 2 -> 1 - (2 + 1) / (4 + 1) = 0.4.
    Mask B: p = 3/4 x 4, g = (1, 0, 0, 0): sum(pg) = 3/4, sum(p) = 3, sum(g) = 1 -> 1 - 2.5 / 5 = 0.5.
    Mean over num_masks = 2: 0.45.
    """
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [LN3, LN3, LN3, LN3]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert dice_loss(logits, targets, torch.tensor(2.0)).item() == pytest.approx(0.45, rel=1e-6)


def test_dice_of_a_perfect_mask_is_zero_and_of_an_empty_prediction_is_almost_one():
    """g = (1, 1, 0, 0). Logits +-40: p = g up to 4e-18, Dice = 1 - (4 + 1) / (4 + 1) = 0.
    Logits -40 everywhere: p = 0, Dice = 1 - 1 / (2 + 1) = 2/3 (the smoothing of 1 keeps it below 1).
    """
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    perfect = torch.tensor([[40.0, 40.0, -40.0, -40.0]])
    assert dice_loss(perfect, targets, torch.tensor(1.0)).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.full((1, 4), -40.0)
    assert dice_loss(empty, targets, torch.tensor(1.0)).item() == pytest.approx(2.0 / 3.0, rel=1e-6)


def test_only_ignore_pixels_gives_finite_losses_and_gradients():
    """Labels all 255: no positive query, num_masks = max(0, 1) = 1, mask losses 0 (still in the graph).

    Every query targets "no object" with weight 0.1; with zero logits each CE is ln 3, the weighted mean ln 3,
    times 2. The class head still gets gradients, the mask head zero gradients (not None: DDP needs them).
    """
    outputs = {
        "pred_logits": torch.zeros(2, 2, 3, requires_grad=True),
        "pred_masks": torch.zeros(2, 2, 4, 4, requires_grad=True),
    }
    losses = MaskClassificationLoss()(outputs, torch.full((2, 8, 8), 255))
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    assert losses["loss_cls"].item() == pytest.approx(2.0 * math.log(3.0), rel=1e-6)
    losses["total"].backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0
    assert outputs["pred_masks"].grad is not None and torch.all(outputs["pred_masks"].grad == 0)


def test_gradients_reach_class_and_mask_predictions():
    outputs = {
        "pred_logits": torch.randn(1, 2, 3, requires_grad=True),
        "pred_masks": torch.randn(1, 2, 4, 4, requires_grad=True),
    }
    labels = torch.zeros(1, 16, 16, dtype=torch.int64)
    labels[:, 8:] = 1
    MaskClassificationLoss(num_points=64)(outputs, labels)["total"].backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0
    assert outputs["pred_masks"].grad[0, 0].abs().sum() > 0 and outputs["pred_masks"].grad[0, 1].abs().sum() > 0


def test_num_masks_is_averaged_over_processes_and_at_least_one(monkeypatch):
    """Alone: 0 positives -> 1, 3 -> 3. In a simulated group of 2 processes whose other member has 5 positives,
    the all-reduce sums 3 + 5 = 8 and the average over the 2 processes is 4; 0 + 1 -> 0.5 -> clamped to 1.
    """
    assert global_num_masks(torch.tensor(0.0)).item() == 1.0
    assert global_num_masks(torch.tensor(3.0)).item() == 3.0
    other_process = {"count": 5.0}
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor: tensor.add_(other_process["count"]))
    assert global_num_masks(torch.tensor(3.0)).item() == 4.0
    other_process["count"] = 1.0
    assert global_num_masks(torch.tensor(0.0)).item() == 1.0


def test_bad_labels_and_predictions_are_rejected_clearly():
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 4, 4)}
    with pytest.raises(ValueError, match=r"outside the 2 train ids"):
        MaskClassificationLoss()(outputs, torch.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match=r"\(B, H, W\) integer"):
        MaskClassificationLoss()(outputs, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="one query per class"):
        MaskClassificationLoss()({"pred_logits": torch.zeros(1, 3, 3), "pred_masks": torch.zeros(1, 3, 4, 4)},
                                 torch.zeros(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="label maps"):
        MaskClassificationLoss()(outputs, torch.zeros(2, 4, 4, dtype=torch.int64))


def test_language_regularization_is_log_k_when_all_cosines_are_equal():
    """K = 4 anchors e_0..e_3 in D = 5, text embeddings 3 e_4: every cosine is 0, the softmax is uniform,
    CE = ln 4 for every (b, k)."""
    anchors = torch.eye(5)[:4]
    text = 3.0 * torch.eye(5)[4].expand(2, 4, 5)
    assert language_regularization(text, anchors).item() == pytest.approx(math.log(4.0), rel=1e-6)


def test_language_regularization_uses_raw_cosines_without_temperature():
    """K = 2, anchors 2 e_0 and 5 e_1 (normalised inside), both text embeddings 7 e_0: cosines (1, 0) for both.

    k = 0: CE = -ln(e / (e + 1)) = ln(1 + e^-1); k = 1: CE = -ln(1 / (e + 1)) = ln(1 + e).
    Mean: [ln(1 + e^-1) + ln(1 + e)] / 2 = 0.81326. A temperature would scale the cosines and change this.
    """
    anchors = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    text = torch.tensor([[[7.0, 0.0], [7.0, 0.0]]], requires_grad=True)
    loss = language_regularization(text, anchors)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert text.grad.abs().sum() > 0


def test_pixel_text_scores_are_cosines():
    """Pixels v = (3, 4) and (0, -2), texts t_0 = (1, 0), t_1 = (0, 5): cos = v.t / (|v| |t|).

    (3, 4): 3/5 with t_0, 4/5 with t_1; (0, -2): 0 with t_0, -1 with t_1.
    """
    dense = torch.tensor([[3.0, 0.0], [4.0, -2.0]]).view(1, 2, 1, 2)  # (B, D, h, w): two pixels in a row
    text = torch.tensor([[[1.0, 0.0], [0.0, 5.0]]])  # (B, K, D)
    scores = pixel_text_scores(dense, text)
    assert scores.shape == (1, 2, 1, 2)
    torch.testing.assert_close(scores[0, :, 0], torch.tensor([[0.6, 0.0], [0.8, -1.0]]))


def test_vision_language_regularization_averages_over_ignored_pixels_too():
    """B = 1, D = K = 2, a 1x1 dense map v = 4 e_0, text embeddings e_0 and 2 e_1: cosines (1, 0).

    tau = 1: logits (1, 0) at every pixel of the 2x2 labels [[0, 1], [255, 255]] (upsampling a 1x1 map is constant).
    Pixel with label 0: ln(1 + e^-1); label 1: ln(1 + e); ignore pixels add 0 but count in the mean over all 4:
    [ln(1 + e^-1) + ln(1 + e)] / 4 = 0.40663, half the mean over the labelled pixels only.
    """
    dense = torch.tensor([4.0, 0.0]).view(1, 2, 1, 1)
    text = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    labels = torch.tensor([[[0, 1], [255, 255]]])
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 4
    loss = vision_language_regularization(dense, text, labels, temperature=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_vision_language_regularization_upsamples_logits_bilinearly_and_divides_by_tau():
    """Dense map 1x2: v = e_0 on the left, e_1 on the right; text e_0, e_1; labels 1x4 row (0, 0, 1, 1).

    Cosine maps: class 0 (1, 0), class 1 (0, 1) over the two columns. Upsampling 2 -> 4 columns with
    align_corners=False reads source x = (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]):
    class 0 logits (1, 0.75, 0.25, 0) / tau, class 1 the mirror image.
    tau = 1: CE per pixel ln(1 + e^-1), ln(1 + e^-0.5), ln(1 + e^-0.5), ln(1 + e^-1); mean 0.39367.
    tau = 0.5 doubles the logit gaps: [ln(1 + e^-2) + ln(1 + e^-1)] / 2.
    """
    dense = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    text = torch.eye(2).unsqueeze(0)
    labels = torch.tensor([[[0, 0, 1, 1]]])
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-0.5))) / 2
    assert vision_language_regularization(dense, text, labels, temperature=1.0).item() == pytest.approx(expected)
    expected_half = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert vision_language_regularization(dense, text, labels, temperature=0.5).item() == pytest.approx(expected_half)


def test_regularizer_cosines_stay_float32_under_mixed_precision():
    """Under bf16 autocast the einsums would run in bf16 (8 significant bits, logit errors up to 0.06 at
    tau = 0.07); the regularizers must give the float32 values."""
    torch.manual_seed(0)
    dense, text = torch.randn(2, 16, 3, 3), torch.randn(2, 4, 16)
    anchors, labels = torch.randn(4, 16), torch.randint(0, 4, (2, 6, 6))
    reference = (vision_language_regularization(dense, text, labels), language_regularization(text, anchors))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = (vision_language_regularization(dense, text, labels), language_regularization(text, anchors))
    for value, expected in zip(mixed, reference):
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)


def test_vision_regularization_is_plain_mse_and_leaves_the_teacher_alone():
    """g = [[1, 2], [3, 4]], g_0 = [[0, 0], [3, 2]]: squared differences 1, 4, 0, 4, mean over B x D = 9 / 4.
    Not normalised: a cosine distance would differ, and be undefined for the zero first row of g_0.
    """
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0], [3.0, 2.0]], requires_grad=True)
    loss = vision_regularization(image, teacher)
    assert loss.item() == pytest.approx(9.0 / 4.0)
    loss.backward()
    torch.testing.assert_close(image.grad, torch.tensor([[0.5, 1.0], [0.0, 1.0]]))  # 2 (g - g_0) / 4
    assert teacher.grad is None


def _full_outputs(batch_size: int = 2, num_classes: int = 3, dim: int = 8) -> dict:
    torch.manual_seed(0)

    def prediction() -> dict:
        return {
            "pred_logits": torch.randn(batch_size, num_classes, num_classes + 1, requires_grad=True),
            "pred_masks": torch.randn(batch_size, num_classes, 4, 4, requires_grad=True),
        }

    outputs = prediction()
    outputs["aux_outputs"] = [prediction(), prediction()]
    outputs["text_embeddings"] = torch.randn(batch_size, num_classes, dim, requires_grad=True)
    outputs["dense_embeddings"] = torch.randn(batch_size, dim, 2, 2, requires_grad=True)
    outputs["image_embedding"] = torch.randn(batch_size, dim, requires_grad=True)
    return outputs


def _labels(batch_size: int = 2) -> torch.Tensor:
    labels = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 1], [255, 2, 2, 1], [255, 255, 0, 0]]).repeat_interleave(2, 0)
    return labels.repeat_interleave(2, 1).expand(batch_size, 8, 8).clone()


SMALL_POINTS = LossConfig(num_points=32)


def test_tqdm_loss_total_is_the_sum_of_its_weighted_terms():
    """Regularizer entries equal the functions times their weights; the entries other than "total" sum to it."""
    outputs, labels = _full_outputs(), _labels()
    anchors, teacher = torch.randn(3, 8), torch.randn(2, 8)
    config = LossConfig(num_points=32, language_weight=2.0, vision_language_weight=3.0, vision_weight=0.5)
    losses = TqdmLoss.from_config(config)(outputs, labels, anchor_embeddings=anchors, teacher_image_embedding=teacher)
    language = language_regularization(outputs["text_embeddings"], anchors)
    vision_language = vision_language_regularization(outputs["dense_embeddings"], outputs["text_embeddings"], labels)
    vision = vision_regularization(outputs["image_embedding"], teacher)
    assert losses["loss_reg_language"].item() == pytest.approx(2.0 * language.item(), rel=1e-6)
    assert losses["loss_reg_vision_language"].item() == pytest.approx(3.0 * vision_language.item(), rel=1e-6)
    assert losses["loss_reg_vision"].item() == pytest.approx(0.5 * vision.item(), rel=1e-6)
    assert len(losses) == 3 * 3 + 3 + 1
    terms = sum(value.item() for name, value in losses.items() if name != "total")
    assert losses["total"].item() == pytest.approx(terms, rel=1e-6)


def test_tqdm_loss_gradients_reach_every_model_output():
    outputs = _full_outputs()
    loss = TqdmLoss.from_config(SMALL_POINTS)
    losses = loss(outputs, _labels(), anchor_embeddings=torch.randn(3, 8), teacher_image_embedding=torch.randn(2, 8))
    losses["total"].backward()
    for name in ("pred_logits", "pred_masks", "text_embeddings", "dense_embeddings", "image_embedding"):
        assert outputs[name].grad is not None and outputs[name].grad.abs().sum() > 0, name
    for aux in outputs["aux_outputs"]:
        assert aux["pred_logits"].grad.abs().sum() > 0 and aux["pred_masks"].grad.abs().sum() > 0


def test_tqdm_loss_switches_regularizers_off():
    """All three off: only segmentation terms, no anchors and no teacher needed; total = the segmentation total."""
    config = LossConfig(
        num_points=32, language_regularization=False, vision_language_regularization=False, vision_regularization=False
    )
    loss = TqdmLoss.from_config(config)
    assert not loss.needs_teacher
    losses = loss(_full_outputs(), _labels())
    assert not any(name.startswith("loss_reg") for name in losses)
    terms = sum(value.item() for name, value in losses.items() if name != "total")
    assert losses["total"].item() == pytest.approx(terms, rel=1e-6)


def test_tqdm_loss_asks_for_missing_inputs():
    loss = TqdmLoss.from_config(SMALL_POINTS)
    with pytest.raises(ValueError, match="anchor_embeddings"):
        loss(_full_outputs(), _labels(), teacher_image_embedding=torch.randn(2, 8))
    with pytest.raises(ValueError, match="teacher_image_embedding"):
        loss(_full_outputs(), _labels(), anchor_embeddings=torch.randn(3, 8))
    outputs = _full_outputs()
    del outputs["dense_embeddings"]
    with pytest.raises(ValueError, match="dense_embeddings"):
        loss(outputs, _labels(), anchor_embeddings=torch.randn(3, 8), teacher_image_embedding=torch.randn(2, 8))


def test_loss_config_defaults_are_the_paper_values():
    """METHOD.md 6.1 / 6.2: weights 2 / 5 / 5, no-object 0.1, 12544 points, oversample 3, importance 0.75,
    regularizers on with weight 1, tau 0.07."""
    loss = TqdmLoss.from_config(LossConfig())
    segmentation = loss.segmentation_loss
    assert (segmentation.class_weight, segmentation.mask_weight, segmentation.dice_weight) == (2.0, 5.0, 5.0)
    assert segmentation.no_object_weight == 0.1
    assert (segmentation.num_points, segmentation.oversample_ratio, segmentation.importance_sample_ratio) == (
        12544, 3.0, 0.75
    )
    assert (loss.language_weight, loss.vision_language_weight, loss.vision_weight) == (1.0, 1.0, 1.0)
    assert loss.vision_language_temperature == 0.07 and loss.needs_teacher
