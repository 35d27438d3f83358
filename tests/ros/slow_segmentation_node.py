"""The segmentation node with a slow model: the real Predictor behind a fixed delay per batch.

Stands in for a heavy model on a small machine in the burst test. The delay in seconds comes from
TQDM_TEST_INFERENCE_DELAY_S; the rest of the command line is the node's (``--ros-args ...``).
"""

import os
import time

from tqdm_ros.segmentation_node import load_predictor, main


class DelayedPredictor:
    """Delegates to a Predictor, sleeping ``delay_s`` before every batch."""

    def __init__(self, predictor, delay_s: float) -> None:
        self._predictor = predictor
        self._delay_s = delay_s

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict_batch(self, images, **kwargs):
        time.sleep(self._delay_s)
        return self._predictor.predict_batch(images, **kwargs)


if __name__ == '__main__':
    delay_s = float(os.environ['TQDM_TEST_INFERENCE_DELAY_S'])
    main(predictor_factory=lambda params: DelayedPredictor(load_predictor(params), delay_s))
