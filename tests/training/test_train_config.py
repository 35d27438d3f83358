"""Training configs: YAML overrides on typed defaults, strict keys and types, the shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.train_config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_defaults_are_the_official_gta5_clip_recipe():
    config = TrainConfig()
    assert (config.preset, config.schedule.iterations, config.batch_size, config.augmentation.crop_size) == (
        "tqdm-clip-vit-b16", 20000, 8, (512, 512))
    assert (config.optimizer.lr, config.optimizer.weight_decay, config.schedule.warmup_iterations,
            config.seed) == (1e-5, 1e-4, 1500, 2023)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.train_dataset.name in {"gta5", "cityscapes", "camvid"}
    assert config.validation.dataset is not None
    assert config.validation.dataset.name == config.train_dataset.name  # validation on the source domain only


def test_cityscapes_source_config_uses_the_real_to_real_recipe():
    config = load_config(CONFIGS / "tqdm_eva02-l14_city2bdd.yaml")
    assert (config.preset, config.optimizer.lr, config.optimizer.weight_decay) == ("tqdm-eva02-l14", 1e-4, 1e-5)
    assert config.optimizer.no_decay_keys == ("level_embed", "query_embed")
    assert config.schedule.iterations == 20000


def test_command_line_overrides_and_yaml_number_quirk():
    config = load_config(CONFIGS / "camvid_tiny_rn.yaml", ["schedule.iterations=7", "optimizer.lr=1e-5",
                                                           "augmentation.crop_size=[64, 96]"])
    assert config.schedule.iterations == 7
    assert config.optimizer.lr == 1e-5  # PyYAML reads "1e-5" as a string; float fields accept it
    assert config.augmentation.crop_size == (64, 96)


@pytest.mark.parametrize("override, message", [
    ("schedule.iteratons=5", "unknown field"),
    ("batch_size=eight", "'batch_size' must be int"),
    ("augmentation.crop_size=[512]", "must have 2 entries"),
    ("precision=fp8", "precision must be one of"),
    ("validation.scale=0", r"validation.scale must be in \[0.05, 8\]"),
    ("iterations", "key.path=value"),
    ("class_paste.probability=1.5", r"class_paste.probability must be in \[0, 1\]"),
    ("class_paste.probability=0.5", "class_paste.classes is empty"),
    ("mix_style.probability=-0.1", r"mix_style.probability must be in \[0, 1\], got -0.1"),
    ("mix_style.alpha=0", "mix_style.alpha must be > 0, got 0"),
    ("validation.stride=600", r"'validation.stride' must be at most 'validation.window' \(512\)"),
    ("validation.window=16", r"'validation.window' must be in \[32, 8192\]"),
    ("class_paste.classes=[7]", r"'class_paste.classes\[0\]' must be a string, got the number 7; quote it"),
    ("train_dataset={name: camvid, root: x, options: {sequences: [7]}}",
     r"'train_dataset.options.sequences\[0\]' must be a string, got the number 7"),
    ("train_dataset.options={foo: 1}", r"'train_dataset.options' sets \['foo'\], which dataset 'gta5' does not "
                                       r"take; the options it takes: \['split_file'\]"),
    ("validation.dataset={name: cityscapes, root: x, options: {classes: camvid11}}",
     r"'validation.dataset.options' sets \['classes'\], which dataset 'cityscapes' does not take; it takes no "
     r"options"),
    ("optimizer.lr=[1e-3", r"override 'optimizer.lr=\[1e-3' is not valid YAML: .* at line 1, column 6"),
])
def test_bad_overrides_are_rejected_with_a_clear_error(override, message):
    with pytest.raises(ValueError, match=message) as error:
        load_config(None, [override])
    assert "\n" not in str(error.value)  # a user error is one line


def test_mix_style_without_layers_is_refused():
    with pytest.raises(ValueError, match=r"mix_style.layers is empty: name the layers"):
        load_config(None, ["mix_style.probability=0.5", "mix_style.layers=[]"])


def test_several_problems_are_one_line():
    with pytest.raises(ValueError, match="invalid training config: batch_size must be >= 1, got 0; validation.interval "
                                         "must be >= 1, got 0$"):
        load_config(None, ["batch_size=0", "validation.interval=0"])


def test_a_yaml_syntax_error_names_the_config_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("preset: tqdm-tiny-rn\nschedule:\n  iterations: [100\n")
    with pytest.raises(ValueError, match=f"config file '{broken}' is not valid YAML: .* at line 4, column 1; "
                                         f"fix") as error:
        load_config(broken)
    assert "\n" not in str(error.value)


def test_a_bare_string_is_a_list_of_one_for_lists_of_strings():
    """On the command line ``classes=sign-symbol`` means one class, not eleven one-letter ones."""
    config = load_config(None, ["class_paste.classes=sign-symbol", "optimizer.no_decay_keys=level_embed",
                                "train_dataset={name: camvid, root: x, options: {sequences: 0016E5}}",
                                "validation.dataset={name: camvid, root: x, options: {exclude_sequences: 0001TP}}"])
    assert config.class_paste.classes == ["sign-symbol"]
    assert config.optimizer.no_decay_keys == ("level_embed",)
    assert config.train_dataset.options == {"sequences": ["0016E5"]}
    assert config.validation.dataset.options == {"exclude_sequences": ["0001TP"]}
    held_out = load_config(None, ["train_dataset={name: camvid, root: x, options: {exclude_sequences: 0006R0}}",
                                  "hold_out_sequence=0001TP"])
    assert held_out.train_dataset.options["exclude_sequences"] == ["0001TP", "0006R0"]


def test_hold_out_sequence_splits_training_and_validation_by_recording():
    config = load_config(CONFIGS / "camvid_default.yaml", ["hold_out_sequence=0001TP"])
    assert config.train_dataset.split == "trainval"
    assert config.train_dataset.options["exclude_sequences"] == ["0001TP"]
    validation = config.validation.dataset
    assert (validation.name, validation.root, validation.split) == ("camvid", config.train_dataset.root, "trainval")
    assert validation.options == {"sequences": ["0001TP"]}
    # The saved config.yaml of such a run loads to the same datasets.
    again = load_config(None, [f"{key}={value}" for key, value in (
        ("train_dataset", config.to_dict()["train_dataset"]), ("hold_out_sequence", "0001TP"))])
    assert again.train_dataset.options["exclude_sequences"] == ["0001TP"]


def test_deprecated_model_field_is_the_preset(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("model: tqdm-tiny-rn\n")
    assert load_config(old).preset == "tqdm-tiny-rn"
    assert "field 'model' is deprecated, use 'preset'" in caplog.text
    assert load_config(None, ["model=tqdm-small-rn"]).preset == "tqdm-small-rn"
    assert load_config(old, ["preset=tqdm-small-rn"]).preset == "tqdm-small-rn"  # the command line wins
    both = tmp_path / "both.yaml"
    both.write_text("model: tqdm-tiny-rn\npreset: tqdm-small-rn\n")
    with pytest.raises(ValueError, match="sets both 'preset'"):
        load_config(both)
