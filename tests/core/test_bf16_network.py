"""The bf16 copy of the network for CPU inference (tqdm_core.inference.bf16_network)."""
import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn

from tqdm_core import create_model
from tqdm_core.inference.bf16_network import FP32_MODULES, bf16_network
from tqdm_core.modeling.fused_ops import QUICK_GELU_FACTOR


def test_what_is_converted_and_what_stays_fp32():
    model = create_model("tqdm-clip-vit-tiny-official", pretrained=None, seed=0).eval()
    network = bf16_network(model)
    assert network.text_encoder is model.text_encoder  # shared, fp32, its cached embeddings too
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original is untouched
    text_modules = {id(module) for module in network.text_encoder.modules()}
    for module in (m for m in network.modules() if id(m) not in text_modules):
        own = list(module.parameters(recurse=False))
        if isinstance(module, FP32_MODULES):
            assert all(p.dtype == torch.float32 for p in own), module
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in own), module
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            assert module.weight.is_contiguous(memory_format=torch.channels_last)


def test_quick_gelu_is_folded_into_silu_exactly():
    """QuickGELU(W x + b) feeding W2 equals SiLU(1.702 W x + 1.702 b) feeding W2 / 1.702 (checked in fp64)."""
    model = create_model("tqdm-clip-vit-tiny-official", pretrained=None, seed=0).eval()
    network = bf16_network(model)
    names = [name for name, m in model.backbone.named_modules() if isinstance(m, ResidualAttentionBlock)]
    assert names and all(isinstance(model.backbone.get_submodule(n).mlp.gelu, QuickGELU) for n in names)
    original, folded = model.backbone.get_submodule(names[0]).mlp, network.backbone.get_submodule(names[0]).mlp
    assert isinstance(folded.gelu, nn.SiLU)
    x = torch.randn(5, original.c_fc.in_features, dtype=torch.float64)

    def run(mlp, activation, scale_in, scale_out):
        hidden = nn.functional.linear(x, mlp.c_fc.weight.double() * scale_in, mlp.c_fc.bias.double() * scale_in)
        return nn.functional.linear(activation(hidden), mlp.c_proj.weight.double() * scale_out)

    reference = run(original, QuickGELU(), 1.0, 1.0)
    torch.testing.assert_close(run(original, nn.SiLU(), QUICK_GELU_FACTOR, 1 / QUICK_GELU_FACTOR), reference)
    # The stored bf16 weights are the scaled fp32 ones, rounded once.
    torch.testing.assert_close(folded.c_fc.weight.double(), original.c_fc.weight.double() * QUICK_GELU_FACTOR,
                               rtol=2 ** -8, atol=0)
    torch.testing.assert_close(folded.c_proj.weight.double(), original.c_proj.weight.double() / QUICK_GELU_FACTOR,
                               rtol=2 ** -8, atol=0)
