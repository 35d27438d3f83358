"""Input normalisation shared by training, evaluation and the Predictor (METHOD.md section 7.2, step 6).

CLIP's RGB mean and std in the 0..255 range; the official code uses the same values for EVA-CLIP.
"""
import numpy as np
import torch

CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """Normalise RGB images.

    Args:
        images: (B, 3, H, W) or (3, H, W), RGB values in [0, 255], any float dtype or uint8.

    Returns:
        Float32 tensor of the same shape, (x - mean) / std per channel.
    """
    shape = (3, 1, 1) if images.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=images.device).view(shape)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=images.device).view(shape)
    return (images.float() - mean) / std


def normalize_image_array(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised, for data loaders that work in numpy."""
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    return ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy()
