"""Every preset builds; small presets run forward and backward; paper presets have the paper's parameter counts."""
import pytest
import torch

from tqdm_core import create_model, list_presets
from tqdm_core.pretrained import PretrainedWeightsUnavailable

SMALL_PRESETS = ["tqdm-tiny-rn", "tqdm-tiny-vit"]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", SMALL_PRESETS)
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (128, 96)])
def test_small_preset_forward_backward(name, size):
    model = create_model(name, pretrained=None, seed=0).train()
    images = torch.randn(2, 3, *size)
    out = model(images)
    k = model.num_classes
    assert out["pred_logits"].shape == (2, k, k + 1)
    assert out["pred_masks"].shape == (2, k, size[0] // 4, size[1] // 4)
    assert len(out["aux_outputs"]) == model.transformer_decoder.layers.__len__()
    assert out["text_embeddings"].shape[:2] == (2, k)
    assert out["image_embedding"].shape == (2, out["text_embeddings"].shape[2])
    tensors = [out["pred_logits"], out["pred_masks"], out["dense_embeddings"], out["image_embedding"]]
    tensors += [t for aux in out["aux_outputs"] for t in aux.values()]
    assert all(torch.isfinite(t).all() for t in tensors)
    loss = sum(t.float().square().mean() for t in tensors)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)
    assert model.text_encoder.context_tokens.grad.abs().sum() > 0  # gradients reach the learnable prompt
    assert model.text_encoder.token_embedding.weight.grad is None  # the text tower stays frozen


def test_every_preset_builds():
    # The two paper presets are built by the parameter-count test below; build the rest here.
    for name in sorted(set(list_presets()) - {"tqdm-clip-vit-b16", "tqdm-eva02-l14"}):
        model = create_model(name, pretrained=None, seed=0)
        assert model.preset == name
        assert count(model) > 0
        del model


# METHOD.md section 12: counts read off the official code with random weights.
CLIP_B16_COUNTS = {"visual": 86_828_544, "pyramid": 7_081_728, "text": 63_393_792, "context_decoder": 3_553_024,
                   "pixel_decoder": 10_709_952, "decoder": 14_614_548, "prompt": 3_072}
EVA_L14_COUNTS = {"visual": 305.2e6, "pyramid": 12.6e6, "text": 123.6e6, "context_decoder": 3.75e6,
                  "pixel_decoder": 11.0e6, "decoder": 14.7e6}


def module_counts(model):
    prompt = model.text_encoder.context_tokens.numel() + model.context_decoder.gamma.numel()
    return {
        "visual": count(model.backbone.visual),
        "pyramid": count(model.backbone.pyramid),
        "text": count(model.text_encoder) - model.text_encoder.context_tokens.numel(),
        "context_decoder": count(model.context_decoder) - model.context_decoder.gamma.numel(),
        "pixel_decoder": count(model.pixel_decoder),
        "decoder": count(model.transformer_decoder),
        "prompt": prompt,
    }


@pytest.mark.parametrize("name,expected", [("tqdm-clip-vit-b16", CLIP_B16_COUNTS), ("tqdm-eva02-l14", EVA_L14_COUNTS)])
def test_paper_parameter_counts_within_two_percent(name, expected):
    counts = module_counts(create_model(name, pretrained=None, seed=0))
    for module, value in expected.items():
        assert abs(counts[module] - value) <= 0.02 * value, f"{module}: {counts[module]} vs paper {value}"
    if name == "tqdm-clip-vit-b16":
        assert counts == CLIP_B16_COUNTS  # the re-implementation matches the official ViT-B/16 model exactly


def test_changing_the_class_list_changes_the_queries():
    base = create_model("tqdm-tiny-rn", pretrained=None, seed=0).eval()
    names = list(base.class_table.names)
    renamed = names[:]
    renamed[0] = "gravel path"
    other = create_model("tqdm-tiny-rn", pretrained=None, seed=0, classes=renamed).eval()
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        text_a, text_b = base.text_encoder(), other.text_encoder()
        queries_a = base.transformer_decoder.query_feat_mlp(text_a)
        queries_b = other.transformer_decoder.query_feat_mlp(text_b)
    assert other.class_table.names[0] == "gravel path"
    assert not torch.allclose(queries_a[0], queries_b[0])  # the renamed class got a new query
    torch.testing.assert_close(queries_a[1:], queries_b[1:])  # the others are unchanged


def test_text_embeddings_are_cached_only_at_inference():
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0).eval()
    with torch.no_grad():
        first = model.text_encoder()
        assert model.text_encoder() is first
    model.train()
    assert model.text_encoder._cache is None


def test_unknown_preset_and_pretrained_errors(tmp_path):
    with pytest.raises(KeyError, match="available presets"):
        create_model("tqdm-nope", pretrained=None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("tqdm-clip-rn50", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(PretrainedWeightsUnavailable, match="not an open_clip pretrained tag"):
        create_model("tqdm-clip-rn50", pretrained="not-a-tag")
    with pytest.raises(PretrainedWeightsUnavailable, match="no open_clip model"):
        create_model("tqdm-tiny-rn", pretrained="openai")


def test_pretrained_file_is_loaded_into_the_towers(tmp_path):
    """A local open_clip checkpoint goes into the visual tower (grid resized) and the frozen text tower."""
    import open_clip

    clip = open_clip.create_model("RN50", pretrained=None)
    torch.nn.init.normal_(clip.token_embedding.weight)
    path = tmp_path / "rn50.pt"
    torch.save(clip.state_dict(), path)
    model = create_model("tqdm-clip-rn50", pretrained=str(path), seed=0)
    torch.testing.assert_close(model.text_encoder.token_embedding.weight, clip.token_embedding.weight)
    torch.testing.assert_close(model.backbone.visual.layer1[0].conv1.weight, clip.visual.layer1[0].conv1.weight)
    torch.testing.assert_close(model.text_encoder.positional_embedding, clip.positional_embedding[:10])
    assert model.backbone.visual.attnpool.positional_embedding.shape[0] == 16 * 16 + 1  # 7x7 grid resized to 512
