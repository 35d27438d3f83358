"""Semantic inference (METHOD.md section 8) against a hand-computed case."""
import math

import torch

from tqdm_core.modeling.semantic_inference import scores_to_probabilities, semantic_scores

LN2, LN3 = math.log(2.0), math.log(3.0)


def _two_queries() -> tuple[torch.Tensor, torch.Tensor]:
    """Q = 2 queries, K = 2 classes (+ "no object"), a 1x2 mask grid.

    Class logits: query 0 (ln 2, 0, 0) -> softmax (1/2, 1/4, 1/4); query 1 (0, 0, ln 2) -> (1/4, 1/4, 1/2).
    Dropping "no object": p_0 = (1/2, 1/4), p_1 = (1/4, 1/4).
    Mask logits: query 0 (0, ln 3) -> sigmoid (1/2, 3/4); query 1 (-ln 3, 0) -> (1/4, 1/2).
    """
    class_logits = torch.tensor([[[LN2, 0.0, 0.0], [0.0, 0.0, LN2]]])  # (B, Q, K + 1)
    mask_logits = torch.tensor([[[[0.0, LN3]], [[-LN3, 0.0]]]])  # (B, Q, h, w)
    return class_logits, mask_logits


def test_semantic_scores_sum_class_probability_times_mask_over_queries():
    """S_c(x) = sum_q p_q(c) m_q(x):

    class 0: pixel 0: 1/2 * 1/2 + 1/4 * 1/4 = 5/16;  pixel 1: 1/2 * 3/4 + 1/4 * 1/2 = 1/2
    class 1: pixel 0: 1/4 * 1/2 + 1/4 * 1/4 = 3/16;  pixel 1: 1/4 * 3/4 + 1/4 * 1/2 = 5/16
    """
    scores = semantic_scores(*_two_queries())
    assert scores.shape == (1, 2, 1, 2) and scores.dtype == torch.float32
    torch.testing.assert_close(scores[0, :, 0], torch.tensor([[5 / 16, 1 / 2], [3 / 16, 5 / 16]]))


def test_semantic_scores_are_float32_from_low_precision_logits():
    class_logits, mask_logits = _two_queries()
    scores = semantic_scores(class_logits.bfloat16(), mask_logits.bfloat16())
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, semantic_scores(class_logits, mask_logits), atol=1e-2, rtol=0)


def test_probabilities_normalise_the_scores_per_pixel():
    """P_c = S_c / sum S: pixel 0 (5/16, 3/16) -> (5/8, 3/8); pixel 1 (1/2, 5/16) -> (8/13, 5/13)."""
    probabilities = scores_to_probabilities(semantic_scores(*_two_queries()))
    torch.testing.assert_close(probabilities[0, :, 0], torch.tensor([[5 / 8, 8 / 13], [3 / 8, 5 / 13]]))
