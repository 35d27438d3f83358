"""Recompute the BatchNorm statistics of an averaged (EMA) model on its fold's training frames (SWA's update_bn)."""
import sys, numpy as np, torch
from torch.optim.swa_utils import update_bn
from tqdm_core import load_checkpoint, save_checkpoint
from tqdm_core.data import build_dataset
from tqdm_core.image_normalization import normalize_images
torch.set_num_threads(1)
fold, out = sys.argv[1], sys.argv[2]
ck = load_checkpoint(f"runs/sched3000_ema_holdout_{fold}/model_final.pt")
model = ck.model
data = build_dataset("camvid", "../shared/data/camvid", "trainval", exclude_sequences=[fold])
rng = np.random.default_rng(0)
batches = []
idx = rng.permutation(len(data))[:96]
for start in range(0, len(idx), 8):
    crops = []
    for i in idx[start:start + 8]:
        img = data.load_sample(int(i))["image"]  # (360, 480, 3) uint8
        y, x = rng.integers(0, img.shape[0] - 320 + 1), rng.integers(0, img.shape[1] - 320 + 1)
        crops.append(img[y:y + 320, x:x + 320])
    t = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    batches.append(normalize_images(t))
update_bn(batches, model)
model.eval()
save_checkpoint(model, out, metadata=ck.metadata)
print("saved", out)
