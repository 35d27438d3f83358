"""The benchmark's per-operator-class breakdown (`python -m training.bench --profile`): operators go to their
class, and everything inside the Predictor's own attention counts as attention."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tqdm_core.modeling import fused_ops
from training import op_profile


def test_operator_names_map_to_their_class():
    assert op_profile.op_class("aten::addmm") == "matmul"
    assert op_profile.op_class("mkldnn::_linear_pointwise") == "matmul"
    assert op_profile.op_class("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_profile.op_class("aten::native_group_norm") == "norm"
    assert op_profile.op_class("aten::_softmax") == "element-wise"


@pytest.mark.skipif(not fused_ops.onednn_dtypes(), reason="the fused attention needs oneDNN")
def test_softmax_inside_the_fused_attention_counts_as_attention(monkeypatch):
    monkeypatch.setattr(fused_ops, "gemm_attention_pays", lambda: True)
    q, k, v = torch.randn(3, 1, 2, 40, 16).unbind(0)
    with torch.no_grad(), fused_ops.fast_kernels(), profile(activities=[ProfilerActivity.CPU]) as profiler:
        fused_ops.attention(q, k, v)
        torch.randn(40, 40).softmax(-1)  # outside: element-wise
    classes = [op_profile._event_class(event) for event in profiler.events() if event.name == "aten::_softmax"]
    assert sorted(classes) == ["attention"] * 2 + ["element-wise"]  # one softmax per head inside, one outside
    linears = [op_profile._event_class(event) for event in profiler.events()
               if event.name == "mkldnn::_linear_pointwise"]
    assert linears == ["attention"] * 4


def test_profile_call_splits_the_wall_time():
    layer = torch.nn.Linear(64, 64)
    result = op_profile.profile_call(lambda: layer(torch.randn(256, 64)).relu())
    assert set(result["classes_s"]) == {*op_profile.CLASSES, "python / dispatch"}
    assert result["classes_s"]["matmul"] > 0
    assert sum(result["classes_s"].values()) >= result["wall_s"] * 0.99
    assert 0.0 <= result["outside_kernels"] <= 1.0
