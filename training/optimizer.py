"""AdamW parameter groups and the poly learning-rate schedule of METHOD.md section 7.3.

Groups (official configs, mmcv optimizer-constructor semantics):

- the frozen text tower (``requires_grad=False``) is not given to the optimizer at all (official: lr_mult 0);
- ``backbone.*`` (visual encoder with its pyramid and projections): lr x ``backbone_lr_mult`` (0.1), weight decay
  on every parameter, norms included, because mmcv matches the longer key "backbone" before "norm";
- everything else (learnable context tokens, context decoder, pixel decoder, transformer decoder) at the base LR;
  norms, and parameters whose name holds one of ``no_decay_keys`` (``level_embed``, ``query_embed`` in the
  Cityscapes-source configs), without weight decay.

Which parameters are norms is ``OptimizerConfig.norm_rule``:

- ``"name"`` (default, the official rule of the paper configs): mmcv's custom key ``"norm"``, i.e. every parameter
  whose name contains "norm". Outside the backbone our names contain "norm" exactly where the official names do
  (tests/training/test_optimizer.py checks it on the official ViT-B/16 layout), so the groups are the official
  ones. The rule misses norms named by position: the pixel decoder's GroupNorms (official ``input_convs.N.gn``,
  here ``input_convs.N.1``) and the context decoder's LayerNorms ``memory_proj.0/2``, ``text_proj.0`` and
  ``out_proj.0`` keep weight decay (18 tensors in the paper presets).
- ``"type"``: every parameter of a normalization layer (BatchNorm, LayerNorm, GroupNorm, RMSNorm), found by module
  type: what the name rule means to do. The CamVid models trained from scratch (the shipped default model) use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.train_config import OptimizerConfig, ScheduleConfig

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
NORM_RULES = ("name", "type")
BACKBONE_PREFIX = "backbone."


@dataclass(frozen=True)
class GroupRule:
    """One parameter group: its name, LR multiplier and weight-decay multiplier."""

    name: str
    lr_mult: float
    decay_mult: float


def norm_parameter_names(model: nn.Module, rule: str) -> set[str]:
    """Names of the parameters that count as norms under ``rule`` (see the module docstring).

    Args:
        model: the model whose ``named_parameters()`` names are returned.
        rule: "name" (the name contains "norm", mmcv's rule) or "type" (parameters of BatchNorm, SyncBatchNorm,
            LayerNorm, GroupNorm and RMSNorm modules).

    Raises:
        ValueError: an unknown rule.
    """
    if rule == "name":
        return {name for name, _ in model.named_parameters() if "norm" in name}
    if rule != "type":
        raise ValueError(f"optimizer.norm_rule must be one of {list(NORM_RULES)}, got '{rule}'")
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            names.update(f"{module_name}.{name}" if module_name else name
                         for name, _ in module.named_parameters(recurse=False))
    return names


def group_rule(name: str, *, is_norm: bool, config: OptimizerConfig) -> GroupRule:
    """The group of one trainable parameter, from its name (``model.named_parameters()``) and kind."""
    if name.startswith(BACKBONE_PREFIX):
        if is_norm and not config.backbone_norm_decay:
            return GroupRule("backbone_no_decay", config.backbone_lr_mult, 0.0)
        return GroupRule("backbone", config.backbone_lr_mult, 1.0)
    if is_norm or any(key in name for key in config.no_decay_keys):
        return GroupRule("head_no_decay", 1.0, 0.0)
    return GroupRule("head", 1.0, 1.0)


def build_parameter_groups(model: nn.Module, optimizer_config: OptimizerConfig,
                           schedule_config: ScheduleConfig) -> list[dict]:
    """AdamW parameter groups of the trainable parameters of ``model`` (a TqdmSegmentor, not DDP-wrapped).

    Every group dict carries, besides ``params``, ``lr`` and ``weight_decay``: ``name``, ``lr_mult``,
    ``decay_mult``, ``initial_lr`` (base LR x lr_mult, the poly schedule's start) and ``min_lr`` (its floor),
    and ``param_names`` for inspection. Empty groups are left out.
    """
    norms = norm_parameter_names(model, optimizer_config.norm_rule)
    groups: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        rule = group_rule(name, is_norm=name in norms, config=optimizer_config)
        if rule.name not in groups:
            initial_lr = optimizer_config.lr * rule.lr_mult
            min_lr = schedule_config.min_lr * (rule.lr_mult if schedule_config.scale_min_lr else 1.0)
            groups[rule.name] = {"params": [], "param_names": [], "name": rule.name, "lr_mult": rule.lr_mult,
                                 "decay_mult": rule.decay_mult, "lr": initial_lr, "initial_lr": initial_lr,
                                 "min_lr": min_lr, "weight_decay": optimizer_config.weight_decay * rule.decay_mult}
        groups[rule.name]["params"].append(parameter)
        groups[rule.name]["param_names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameter (every requires_grad is False); nothing to train")
    return list(groups.values())


def build_optimizer(model: nn.Module, optimizer_config: OptimizerConfig,
                    schedule_config: ScheduleConfig) -> torch.optim.AdamW:
    """AdamW over ``build_parameter_groups``; the LRs are set by ``PolySchedule.apply`` before every step."""
    return torch.optim.AdamW(build_parameter_groups(model, optimizer_config, schedule_config),
                             lr=optimizer_config.lr, betas=optimizer_config.betas, eps=optimizer_config.eps,
                             weight_decay=optimizer_config.weight_decay)


class PolySchedule:
    """Per-iteration poly decay to a floor, with a linear warm-up on top (mmcv PolyLrUpdaterHook + linear warmup).

    For a group starting at ``initial_lr`` with floor ``min_lr``, at iteration ``i`` (0-based) of ``T``::

        regular(i) = (initial_lr - min_lr) * (1 - i / T) ** power + min_lr
        lr(i)      = regular(i) * (1 - (1 - i / W) * (1 - warmup_ratio))   for i < W (warm-up length)
        lr(i)      = regular(i)                                             otherwise

    A group whose ``initial_lr`` equals the floor (the backbone of the GTA5-source configs: 1e-5 x 0.1 = 1e-6)
    therefore stays at the floor after the warm-up.

    Args:
        config: iterations, warm-up, power (``min_lr`` is carried by each optimizer group).
    """

    def __init__(self, config: ScheduleConfig) -> None:
        self.total_iterations = config.iterations
        self.warmup_iterations = config.warmup_iterations
        self.warmup_ratio = config.warmup_ratio
        self.power = config.power

    def learning_rate(self, iteration: int, initial_lr: float, min_lr: float) -> float:
        """LR of a group at ``iteration`` (0-based, in [0, total_iterations])."""
        progress = min(iteration, self.total_iterations) / self.total_iterations
        regular = (initial_lr - min_lr) * (1.0 - progress) ** self.power + min_lr
        if iteration < self.warmup_iterations:
            regular *= 1.0 - (1.0 - iteration / self.warmup_iterations) * (1.0 - self.warmup_ratio)
        return regular

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> None:
        """Set every group's ``lr`` for the optimizer step of ``iteration``."""
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(iteration, group["initial_lr"], group["min_lr"])

    def state_dict(self) -> dict:
        """The schedule's settings, stored in checkpoints to refuse resuming under another schedule."""
        return {"total_iterations": self.total_iterations, "warmup_iterations": self.warmup_iterations,
                "warmup_ratio": self.warmup_ratio, "power": self.power}
