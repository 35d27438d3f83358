"""The fp32 CPU inference copy (`channels_last_network`): channels-last copies of the convolution weights, every
other tensor shared with the model, the model itself untouched, the same outputs as the model."""
import pytest
import torch
from torch import nn

from tqdm_core import Predictor, create_model
from tqdm_core.inference.channels_last_network import channels_last_network
from tqdm_core.inference.export import InferenceGraph
from tqdm_core.modeling.semantic_inference import semantic_scores


def test_copy_shares_all_but_the_convolution_weights():
    model = create_model("tqdm-tiny-vit", pretrained=None, seed=0).eval()
    network = channels_last_network(model)
    convolutions = {name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d,
                                                                                           nn.ConvTranspose2d))}
    assert convolutions  # the ViT's patch embedding and the pyramid's transposed convolutions at least
    model_tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, tensor in list(network.named_parameters()) + list(network.named_buffers()):
        original = model_tensors[name]
        if name.rpartition(".")[0] in convolutions and name.endswith("weight"):
            assert tensor is not original and torch.equal(tensor, original)
            assert tensor.is_contiguous(memory_format=torch.channels_last) and original.is_contiguous()
        else:
            assert tensor is original, name


@pytest.mark.parametrize("name", ["tqdm-tiny-rn", "tqdm-tiny-vit"])
def test_copy_computes_what_the_model_computes(name):
    """The copy inside the Predictor's graph against the model's plain training-time forward: 1e-4 on the
    semantic scores (values up to the number of queries), as for the graph on the model itself."""
    model = create_model(name, pretrained=None, seed=0).eval()
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        outputs = model(images)
        reference = semantic_scores(outputs["pred_logits"], outputs["pred_masks"])
        fast = InferenceGraph(model=channels_last_network(model), fast_kernels=True)(images)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-4)


def test_fp32_predictor_on_the_cpu_runs_the_copy():
    model = create_model("tqdm-tiny-vit", pretrained=None, seed=0)
    network = Predictor(model, precision="fp32")._network.model
    assert network is not model and network.backbone is not model.backbone
    weights = [m.weight for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
