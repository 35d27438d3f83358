"""SemSegEvaluator against confusion matrices and scores derived by hand on tiny label maps."""
import json
import math

import numpy as np
import pytest

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.evaluation import (CITYSCAPES_TO_CAMVID_NAMES, SemSegEvaluator, class_mapping_by_name,
                                  classes_without_counterpart, map_predictions)

# 3 classes, one 2x3 frame.
GT = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.uint8)


def test_two_by_three_frame_matches_hand_derivation():
    """Pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0).

    Confusion (rows gt, cols pred): [[1, 1, 0], [0, 2, 0], [1, 0, 1]].
    GT totals (2, 2, 2), predicted totals (2, 3, 1), TP (1, 2, 1).
    IoU = TP / (gt + pred - TP): 1/3, 2/3, 1/2 -> mIoU = (1/3 + 2/3 + 1/2) / 3 = 1/2.
    Accuracy = TP / gt: 1/2, 1, 1/2 -> mean accuracy 2/3; pixel accuracy = 4/6 = 2/3.
    FWIoU = (2/6)(1/3) + (2/6)(2/3) + (2/6)(1/2) = 1/2.
    """
    evaluator = SemSegEvaluator(3)
    evaluator.process(PRED, GT)
    results = evaluator.evaluate()
    np.testing.assert_array_equal(results["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert results["confusion_matrix"].dtype == np.int64
    np.testing.assert_allclose(results["iou"], [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(results["accuracy"], [1 / 2, 1, 1 / 2])
    assert results["miou"] == pytest.approx(0.5)
    assert results["miou_gt_present"] == pytest.approx(0.5)
    assert results["pixel_accuracy"] == pytest.approx(2 / 3)
    assert results["mean_accuracy"] == pytest.approx(2 / 3)
    assert results["fwiou"] == pytest.approx(0.5)
    assert results["num_pixels"] == 6


def test_ignored_ground_truth_is_not_scored():
    """Setting GT (1, 2) to 255 removes the pair (2, 0): confusion [[1, 1, 0], [0, 2, 0], [0, 0, 1]].

    IoU: class 0 = 1 / (2 + 1 - 1) = 1/2, class 1 = 2 / (2 + 3 - 2) = 2/3, class 2 = 1 / (1 + 1 - 1) = 1.
    Pixel accuracy 4/5.
    """
    gt = GT.copy()
    gt[1, 2] = 255
    evaluator = SemSegEvaluator(3)
    evaluator.process(PRED, gt)
    results = evaluator.evaluate()
    np.testing.assert_array_equal(results["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    np.testing.assert_allclose(results["iou"], [1 / 2, 2 / 3, 1])
    assert results["pixel_accuracy"] == pytest.approx(4 / 5)
    assert results["num_pixels"] == 5


def test_unlabeled_prediction_is_a_miss_not_ignored():
    """Predicting 255 at (1, 1), GT 2, turns the (2, 2) pair into a miss with no false positive.

    Confusion [[1, 1, 0], [0, 2, 0], [1, 0, 0]] plus one "unlabeled" pixel in row 2.
    Class 2: TP 0, GT 2 (both still counted), predicted 0 -> IoU 0 / 2 = 0, accuracy 0.
    Class 0 and 1 are unchanged: 1/3 and 2/3. Pixel accuracy 3/6 (not 3/5, the pixel is not ignored).
    """
    pred = PRED.copy()
    pred[1, 1] = 255
    evaluator = SemSegEvaluator(3)
    evaluator.process(pred, GT)
    results = evaluator.evaluate()
    np.testing.assert_array_equal(results["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(results["unlabeled_predictions"], [0, 0, 1])
    np.testing.assert_allclose(results["iou"], [1 / 3, 2 / 3, 0])
    np.testing.assert_allclose(results["accuracy"], [1 / 2, 1, 0])
    assert results["pixel_accuracy"] == pytest.approx(3 / 6)


def test_absent_classes_are_nan_and_excluded_from_means():
    """4 classes, GT has classes 0 and 1 only; class 2 is predicted once, class 3 never appears.

    GT [0, 0, 1, 1], pred [0, 0, 1, 2]: IoU 0 = 2/2 = 1, IoU 1 = 1/2, IoU 2 = 0/1 = 0, IoU 3 undefined (NaN).
    mIoU over classes present in GT or prediction = (1 + 1/2 + 0) / 3 = 1/2;
    mIoU over classes present in GT = (1 + 1/2) / 2 = 3/4. Accuracy of classes 2 and 3 is NaN (no GT).
    """
    evaluator = SemSegEvaluator(4)
    evaluator.process(np.array([[0, 0, 1, 2]]), np.array([[0, 0, 1, 1]]))
    results = evaluator.evaluate()
    assert results["iou"][:3] == pytest.approx([1, 0.5, 0])
    assert math.isnan(results["iou"][3])
    assert results["miou"] == pytest.approx(0.5)
    assert results["miou_gt_present"] == pytest.approx(0.75)
    assert np.isnan(results["accuracy"][2:]).all()
    assert results["mean_accuracy"] == pytest.approx(0.75)


def test_merge_equals_processing_everything_at_once():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (4, 9, 11)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 6, gt.shape).astype(np.uint8)
    pred[rng.random(gt.shape) < 0.1] = 255

    everything = SemSegEvaluator(6)
    everything.process(pred, gt)  # one (B, H, W) batch
    first, second = SemSegEvaluator(6), SemSegEvaluator(6)
    for index in range(2):
        first.process(pred[index], gt[index])
    second.process(list(pred[2:]), list(gt[2:]))
    first.merge(second)

    np.testing.assert_array_equal(first.counts, everything.counts)
    assert first.evaluate()["miou"] == everything.evaluate()["miou"]
    # Cross-check the confusion matrix against a direct count.
    valid = gt != 255
    for row in range(6):
        for column in range(6):
            expected = np.sum(valid & (gt == row) & (pred == column))
            assert everything.confusion_matrix[row, column] == expected


def test_reset_and_empty_evaluation():
    evaluator = SemSegEvaluator(3)
    evaluator.process(PRED, GT)
    evaluator.reset()
    with pytest.raises(ValueError, match="no scored pixel"):
        evaluator.evaluate()
    evaluator.process(PRED, np.full_like(GT, 255))
    with pytest.raises(ValueError, match="no scored pixel"):
        evaluator.evaluate()


def test_class_mapping_scores_a_model_on_another_class_table():
    """A 4-class model on 2-class GT: model 0 -> GT 1, model 1 and 2 -> GT 0, model 3 unmapped (255).

    Model predictions [0, 1, 2, 3, 255, 0] become GT-space [1, 0, 0, unlabeled, unlabeled, 1].
    GT [1, 0, 0, 0, 1, 0]: pairs (1,1) (0,0) (0,0) (0,U) (1,U) (0,1).
    Confusion [[2, 1], [0, 1]], unlabeled per GT class [1, 1].
    IoU 0 = 2 / (4 + 2 - 2) = 1/2, IoU 1 = 1 / (2 + 2 - 1) = 1/3. Pixel accuracy 3/6.
    """
    evaluator = SemSegEvaluator(2, class_mapping=[1, 0, 0, 255])
    evaluator.process(np.array([[0, 1, 2, 3, 255, 0]]), np.array([[1, 0, 0, 0, 1, 0]]))
    results = evaluator.evaluate()
    np.testing.assert_array_equal(results["confusion_matrix"], [[2, 1], [0, 1]])
    np.testing.assert_array_equal(results["unlabeled_predictions"], [1, 1])
    np.testing.assert_allclose(results["iou"], [1 / 2, 1 / 3])
    assert results["pixel_accuracy"] == pytest.approx(0.5)


def test_cityscapes_model_on_camvid_ground_truth():
    evaluator = SemSegEvaluator.for_class_table(CAMVID_11, model_table=CITYSCAPES_19)
    mapping = evaluator.class_mapping
    camvid, cityscapes = CAMVID_11.names.index, CITYSCAPES_19.names.index
    assert mapping[cityscapes("vegetation")] == camvid("tree")
    assert mapping[cityscapes("traffic light")] == camvid("sign-symbol")
    assert mapping[cityscapes("rider")] == camvid("bicyclist")
    for unmatched in ("wall", "terrain", "truck", "bus", "train", "motorcycle"):
        assert mapping[cityscapes(unmatched)] == 255
    # Every CamVid class is reachable from at least one Cityscapes class.
    assert set(mapping[mapping != 255].tolist()) == set(range(CAMVID_11.num_classes))
    # A "truck" prediction on a CamVid "car" pixel is a miss; a "car" prediction is a hit.
    evaluator.process(np.array([[cityscapes("truck"), cityscapes("car")]]), np.array([[camvid("car")] * 2]))
    assert evaluator.evaluate()["accuracy"][camvid("car")] == pytest.approx(0.5)


def test_camvid_model_on_cityscapes_ground_truth_made_from_camvid_labels():
    """A perfect CamVid-11 prediction scored on its own labels mapped to Cityscapes-19 (``camvid:classes=cityscapes19``,
    the layout of `tqdm-bag make` Cityscapes bags) scores 1 for every class present: each CamVid class is sent where
    the label-side mapping sends its labels (sign-symbol -> traffic sign, bicyclist -> rider, tree -> vegetation,
    pedestrian -> person), so nothing lands in the unlabeled column. Matching names only scored 7 / 11 = 0.636."""
    from tqdm_core.data.label_mappings import CAMVID_TO_CITYSCAPES, CAMVID_TO_CITYSCAPES_LUT

    evaluator = SemSegEvaluator.for_class_table(CITYSCAPES_19, model_table=CAMVID_11)
    np.testing.assert_array_equal(evaluator.class_mapping, [CAMVID_TO_CITYSCAPES[k] for k in range(11)])
    camvid_labels = np.arange(12, dtype=np.uint8).reshape(3, 4)  # every class once, and void (11)
    prediction = np.where(camvid_labels == 11, 0, camvid_labels).astype(np.uint8)
    evaluator.process(prediction, CAMVID_TO_CITYSCAPES_LUT[camvid_labels])
    results = evaluator.evaluate()
    assert results["miou"] == pytest.approx(1.0) and results["pixel_accuracy"] == pytest.approx(1.0)
    assert results["unlabeled_predictions"].sum() == 0
    assert np.count_nonzero(~np.isnan(results["iou"])) == 11


def test_classes_without_counterpart_in_both_directions():
    """Cityscapes model on CamVid: six model classes map nowhere, every CamVid class is reachable. CamVid model on
    Cityscapes: every model class maps, eight Cityscapes classes cannot be predicted. Same tables: nothing."""
    to_camvid = SemSegEvaluator.for_class_table(CAMVID_11, model_table=CITYSCAPES_19).class_mapping
    assert classes_without_counterpart(CITYSCAPES_19.names, CAMVID_11.names, to_camvid) == {
        "model": ["wall", "terrain", "truck", "bus", "train", "motorcycle"], "ground_truth": []}
    to_cityscapes = SemSegEvaluator.for_class_table(CITYSCAPES_19, model_table=CAMVID_11).class_mapping
    assert classes_without_counterpart(CAMVID_11.names, CITYSCAPES_19.names, to_cityscapes) == {
        "model": [], "ground_truth": ["wall", "traffic light", "terrain", "truck", "bus", "train", "motorcycle",
                                      "bicycle"]}
    assert classes_without_counterpart(CAMVID_11.names, CAMVID_11.names, None) == {"model": [], "ground_truth": []}


def test_mapping_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="not classes of ground-truth table"):
        class_mapping_by_name(CITYSCAPES_19, CAMVID_11, renames={"road": "street"})
    with pytest.raises(ValueError, match=r"ground-truth ids in \[0, 2\) or 255"):
        SemSegEvaluator(2, class_mapping=[0, 5])
    with pytest.raises(ValueError, match=r"found \[7\]"):
        map_predictions(np.array([[0, 7]]), [0, 1, 1])
    assert set(CITYSCAPES_TO_CAMVID_NAMES.values()) == set(CAMVID_11.names)


def test_bad_labels_give_clear_errors():
    evaluator = SemSegEvaluator(3)
    with pytest.raises(ValueError, match=r"ground truth must hold class ids .* found \[11\]"):
        evaluator.process(PRED, np.where(GT == 2, 11, GT).astype(np.uint8))
    with pytest.raises(ValueError, match="prediction must hold class ids"):
        evaluator.process(np.full_like(PRED, 7), GT)
    with pytest.raises(ValueError, match="differs from ground-truth shape"):
        evaluator.process(PRED[:, :2], GT)
    with pytest.raises(ValueError, match="integer class ids"):
        evaluator.process(PRED.astype(np.float32), GT)
    with pytest.raises(ValueError, match=r"found values in \[-1, 1\]"):
        evaluator.process(PRED.astype(np.int64) - 1, GT)
    with pytest.raises(ValueError, match="one name per class"):
        SemSegEvaluator(3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="cannot merge"):
        evaluator.merge(SemSegEvaluator(4))


def test_wider_integer_labels_are_accepted():
    evaluator = SemSegEvaluator(3)
    evaluator.process(PRED.astype(np.int64), GT.astype(np.int32))
    np.testing.assert_array_equal(evaluator.confusion_matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_to_json_is_strict_json():
    """Class 3 of 4 never appears: its IoU is null in JSON, not NaN (which strict parsers reject)."""
    evaluator = SemSegEvaluator(4, class_names=["a", "b", "c", "d"])
    evaluator.process(np.pad(PRED, ((0, 0), (0, 1))), np.pad(GT, ((0, 0), (0, 1))))
    report = json.loads(json.dumps(evaluator.to_json(), allow_nan=False))
    assert report["per_class"]["d"]["iou"] is None
    assert report["per_class"]["c"]["gt_pixels"] == 2
    assert report["confusion_matrix"][2] == [1, 0, 1, 0]
    assert report["miou"] == pytest.approx(evaluator.evaluate()["miou"])
