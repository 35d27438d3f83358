"""CalibrationAccumulator against ECE / MCE derived by hand."""
import json

import numpy as np
import pytest

from tqdm_core.evaluation import CalibrationAccumulator

# 4 bins: [0, .25), [.25, .5), [.5, .75), [.75, 1].
CONFIDENCE = np.array([0.1, 0.3, 0.3, 0.6, 0.9, 0.9, 0.9, 1.0])
CORRECT = np.array([False, True, False, True, True, True, False, True])


def test_ece_and_mce_match_hand_derivation():
    """Per bin (count, mean confidence, accuracy, |gap|):

    bin 0: 1, 0.1, 0, 0.1;  bin 1: 2, 0.3, 1/2, 0.2;  bin 2: 1, 0.6, 1, 0.4;
    bin 3: 4, (3 * 0.9 + 1.0) / 4 = 0.925, 3/4, 0.175 (confidence 1.0 falls in the last bin).
    ECE = (1 * 0.1 + 2 * 0.2 + 1 * 0.4 + 4 * 0.175) / 8 = 1.6 / 8 = 0.2;  MCE = 0.4.
    """
    accumulator = CalibrationAccumulator(num_bins=4)
    accumulator.add(CONFIDENCE, CORRECT)
    result = accumulator.result()
    assert result.ece == pytest.approx(0.2)
    assert result.mce == pytest.approx(0.4)
    assert result.num_samples == 8
    np.testing.assert_array_equal(result.bin_counts, [1, 2, 1, 4])
    np.testing.assert_allclose(result.bin_confidence, [0.1, 0.3, 0.6, 0.925])
    np.testing.assert_allclose(result.bin_accuracy, [0, 0.5, 1, 0.75])
    np.testing.assert_allclose(result.bin_edges, [0, 0.25, 0.5, 0.75, 1])


def test_bin_boundaries_and_empty_bins():
    """0.25 starts bin 1 (bins are [lo, hi)); bins 2 and 3 stay empty: NaN in the arrays, null in JSON.

    Bin 0: confidence 0.2, wrong -> gap 0.2; bin 1: confidences 0.25 and 0.45 (mean 0.35), both right -> gap 0.65.
    ECE = (0.2 + 2 * 0.65) / 3 = 0.5; MCE = 0.65.
    """
    accumulator = CalibrationAccumulator(num_bins=4)
    accumulator.add(np.array([0.2, 0.25, 0.45], dtype=np.float32), np.array([False, True, True]))
    result = accumulator.result()
    np.testing.assert_array_equal(result.bin_counts, [1, 2, 0, 0])
    assert np.isnan(result.bin_accuracy[2:]).all() and np.isnan(result.bin_confidence[2:]).all()
    assert result.ece == pytest.approx(0.5)
    assert result.mce == pytest.approx(0.65)
    report = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert report["bin_accuracy"] == [0.0, 1.0, None, None]


def test_process_skips_ignored_pixels_and_counts_unlabeled_as_wrong():
    """GT [[0, 1, 255], [2, 2, 1]], pred [[0, 0, 1], [2, 255, 1]], confidence 0.95 everywhere but 0.05 on the
    255 prediction. The ignored pixel is dropped; correct = [T, F, T, F, T] over confidences
    [0.95, 0.95, 0.95, 0.05, 0.95] with 2 bins: bin 0 = (1 pixel, conf 0.05, acc 0), bin 1 = (4, 0.95, 3/4).
    ECE = (1 * 0.05 + 4 * 0.2) / 5 = 0.17.
    """
    gt = np.array([[0, 1, 255], [2, 2, 1]], dtype=np.uint8)
    pred = np.array([[0, 0, 1], [2, 255, 1]], dtype=np.uint8)
    confidence = np.where(pred == 255, 0.05, 0.95).astype(np.float32)
    accumulator = CalibrationAccumulator(num_bins=2)
    accumulator.process(confidence, pred, gt)
    result = accumulator.result()
    np.testing.assert_array_equal(result.bin_counts, [1, 4])
    assert result.ece == pytest.approx(0.17, abs=1e-6)


def test_process_with_class_mapping():
    """Model ids [0, 1, 2] -> GT ids [1, 0, 255]: predictions [0, 1, 2] on GT [1, 0, 1] are right, right, wrong."""
    accumulator = CalibrationAccumulator(num_bins=1)
    accumulator.process(np.full((1, 3), 0.5), np.array([[0, 1, 2]]), np.array([[1, 0, 1]]), class_mapping=[1, 0, 255])
    assert accumulator.result().bin_accuracy[0] == pytest.approx(2 / 3)


def test_merge_equals_accumulating_everything():
    rng = np.random.default_rng(1)
    confidence = rng.random(500)
    correct = rng.random(500) < confidence
    everything, first, second = CalibrationAccumulator(), CalibrationAccumulator(), CalibrationAccumulator()
    everything.add(confidence, correct)
    first.add(confidence[:200], correct[:200])
    second.add(confidence[200:], correct[200:])
    first.merge(second)
    np.testing.assert_array_equal(first.bin_counts, everything.bin_counts)
    np.testing.assert_array_equal(first.bin_correct, everything.bin_correct)
    np.testing.assert_allclose(first.bin_confidence_sum, everything.bin_confidence_sum)
    assert first.result().ece == pytest.approx(everything.result().ece)
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(CalibrationAccumulator(num_bins=10))


def test_bad_input_and_reset():
    accumulator = CalibrationAccumulator(num_bins=4)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        accumulator.add(np.array([0.5, 1.5]), np.array([True, False]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        accumulator.add(np.array([0.5, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="bool"):
        accumulator.add(np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="same shape"):
        accumulator.process(np.zeros((2, 2)), np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="num_bins"):
        CalibrationAccumulator(num_bins=0)
    accumulator.add(CONFIDENCE, CORRECT)
    accumulator.reset()
    with pytest.raises(ValueError, match="no pixel accumulated"):
        accumulator.result()
