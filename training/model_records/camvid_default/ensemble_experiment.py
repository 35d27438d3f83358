"""Ensemble diagnostic on a held-out CamVid recording (session-13 record, not a tool).

Are the fold models' errors independent noise or shared mistakes? Averaging the class probabilities of several
models trained with different recipes removes the first and keeps the second: a large ensemble gain would mean
seed/recipe variance limits the score, a small one a systematic gap to the new street. Prints each model's mIoU
and the ensemble's (whole image, fp32, scale 1.0, the `Predictor.probabilities` mixture averaged).

    python training/model_records/camvid_default/ensemble_experiment.py 0001TP \
        runs/sched3000_ema_holdout_0001TP/model_final_raw.pt runs/wide32_3000_holdout_0001TP/model_final.pt ...
"""
import sys

import numpy as np
import torch

from tqdm_core import Predictor
from tqdm_core.data import build_dataset
from tqdm_core.evaluation import SemSegEvaluator


def main(sequence: str, paths: list[str]) -> None:
    torch.set_num_threads(1)
    frames = build_dataset("camvid", "../shared/data/camvid", "trainval", sequences=[sequence])
    predictors = [Predictor.from_checkpoint(p, precision="fp32", mode="whole", scale=1.0) for p in paths]
    n = frames.class_table.num_classes
    singles = [SemSegEvaluator(n, class_names=frames.class_table.names) for _ in paths]
    ensemble = SemSegEvaluator(n, class_names=frames.class_table.names)
    for index in range(len(frames)):
        sample = frames.load_sample(index)
        image = sample["image"][None]
        total = 0
        for predictor, evaluator in zip(predictors, singles):
            probs = predictor.probabilities(image)[0]
            evaluator.process(probs.argmax(0).numpy().astype(np.uint8), sample["label"])
            total = total + probs
        ensemble.process(total.argmax(0).numpy().astype(np.uint8), sample["label"])
    for path, evaluator in zip(paths, singles):
        print(f"{100 * evaluator.evaluate()['miou']:.2f}  {path}")
    result = ensemble.evaluate()
    print(f"{100 * result['miou']:.2f}  ensemble of {len(paths)}")
    print("per class:", " ".join(f"{name} {100 * iou:.1f}" for name, iou in zip(frames.class_table.names, result["iou"])))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
