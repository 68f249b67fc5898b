"""The configuration mechanism: protocol defaults <- YAML file <- flags <- --set."""
import pytest

from maebench import config
from maebench.errors import MaebenchError, UsageError


@pytest.fixture
def protocol(tmp_path, monkeypatch):
    (tmp_path / "toy.yaml").write_text(
        "epochs: 100\nbatch_size: 1024\nbase_lr: 1.0e-3\nlayer_decay: 0.75\nmask_ratio: 0.75\n"
        "target: norm-pixel\nnorm_pix: true\naug:\n  mixup: 0.8\n  cutmix: 1.0\n"
        "by_arch:\n  vit-base:\n    base_lr: 5.0e-4\n    layer_decay: 0.65\n")
    monkeypatch.setattr(config, "PROTOCOL_DIR", tmp_path)
    return "toy"


def test_defaults_then_arch_then_file_then_flags_then_set(protocol, tmp_path):
    f = tmp_path / "user.yaml"
    f.write_text("epochs: 50\nbase_lr: 2.0e-3\naug:\n  mixup: 0.0\n")
    cfg = config.load(protocol, arch="vit-base", config_file=f, flags={"epochs": 7, "batch_size": None},
                      sets=["base_lr=3e-3", "aug.cutmix=0.5"])
    assert cfg["layer_decay"] == 0.65            # by_arch
    assert cfg["epochs"] == 7                    # flag beats file
    assert cfg["batch_size"] == 1024             # a flag left unset changes nothing
    assert cfg["base_lr"] == pytest.approx(3e-3)  # --set beats everything
    assert cfg["aug"] == {"mixup": 0.0, "cutmix": 0.5}


def test_arch_defaults_apply_only_to_that_arch(protocol):
    assert config.load(protocol, arch="vit-large")["base_lr"] == pytest.approx(1e-3)


def test_unknown_key_names_key_source_and_suggestion(protocol):
    with pytest.raises(UsageError, match=r"unknown config key 'layer_dcay' in --set layer_dcay=0.5 \(did you mean: layer_decay\?\)"):
        config.load(protocol, sets=["layer_dcay=0.5"])


def test_unknown_key_in_file_names_the_file(protocol, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("aug:\n  mixupp: 0.1\n")
    with pytest.raises(UsageError, match=r"unknown config key 'aug.mixupp' in .*bad.yaml"):
        config.load(protocol, config_file=f)


@pytest.mark.parametrize("item, message", [
    ("base_lr=-0.1", r"'base_lr' in --set base_lr=-0.1 expects a number > 0, got -0.1"),
    ("base_lr=0", r"'base_lr' in --set base_lr=0 expects a number > 0, got 0"),
    ("mask_ratio=1.0", r"'mask_ratio' in --set mask_ratio=1.0 expects a number in \(0, 1\), got 1.0"),
    ("mask_ratio=0", r"'mask_ratio' in --set mask_ratio=0 expects a number in \(0, 1\), got 0"),
    ("epochs=0", r"'epochs' in --set epochs=0 expects a whole number >= 1, got 0"),
    ("batch_size=-4", r"'batch_size' in --set batch_size=-4 expects a whole number >= 1, got -4"),
    ("layer_decay=1.5", r"'layer_decay' in --set layer_decay=1.5 expects a number in \(0, 1\], got 1.5"),
    ("aug.mixup=-1", r"'aug.mixup' in --set aug.mixup=-1 expects a number >= 0, got -1"),
    ("base_lr=fast", "'base_lr' in --set base_lr=fast expects a number"),
    ("norm_pix=3", "expects true/false"),
])
def test_bad_values_are_one_line_errors(protocol, item, message):
    with pytest.raises(UsageError, match=message) as e:
        config.load(protocol, sets=[item])
    assert "\n" not in str(e.value)


def test_set_requires_key_value(protocol):
    with pytest.raises(UsageError, match="--set expects key=value"):
        config.load(protocol, sets=["epochs"])


def test_unreadable_or_invalid_config_file(protocol, tmp_path):
    with pytest.raises(MaebenchError, match="cannot read config file .*missing.yaml"):
        config.load(protocol, config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(MaebenchError, match="broken.yaml is not valid YAML"):
        config.load(protocol, config_file=bad)


def test_unknown_protocol_suggests(protocol):
    with pytest.raises(UsageError, match="did you mean: toy"):
        config.load("tooy")


def test_every_shipped_protocol_loads_and_passes_its_own_range_checks():
    for name in config.protocols():
        assert isinstance(config.load(name), dict)


@pytest.mark.parametrize("item, message", [
    ("lr=abc", "config key 'lr' in --set lr=abc expects a number > 0 (or null), got 'abc'"),
    ("lr=-1", "config key 'lr' in --set lr=-1 expects a number > 0 (or null), got -1"),
    ("drop_path=2.5", "config key 'drop_path' in --set drop_path=2.5 expects a number in [0, 1), got 2.5"),
    ("aug.reprob=1.5", "config key 'aug.reprob' in --set aug.reprob=1.5 expects a number in [0, 1], got 1.5"),
    ("img_size=0", "config key 'img_size' in --set img_size=0 expects a whole number >= 1 (or null), got 0"),
    ("labels_per_class=2.5", "config key 'labels_per_class' in --set labels_per_class=2.5 expects a whole number"),
    ("betas=[0.9]", "config key 'betas' in --set betas=[0.9] expects 2 numbers in [0, 1), got [0.9]"),
    ("aug.scale=[0.5,0.1]", "config key 'aug.scale' in --set aug.scale=[0.5,0.1] expects [low, high] with 0 < low"),
])
def test_every_value_of_a_shipped_protocol_is_type_and_range_checked_at_load(item, message):
    with pytest.raises(UsageError) as e:
        config.load("finetune", sets=[item], flags={"batch_size": 32})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_values_are_read_as_their_rule_says():
    cfg = config.load("finetune", sets=["lr=3e-3", "img_size=64.0", "drop_path=0"])
    assert cfg["lr"] == pytest.approx(3e-3) and isinstance(cfg["lr"], float)   # YAML 1.1 reads 3e-3 as text
    assert cfg["img_size"] == 64 and isinstance(cfg["img_size"], int)
    assert config.load("finetune", sets=["lr=null"])["lr"] is None             # a null default may stay null


def test_a_config_file_key_from_another_recipe_gets_its_name_here(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("learning_rate: 0.1\n")
    with pytest.raises(UsageError, match=r"unknown config key 'learning_rate' in .*mine.yaml \(did you mean: base_lr, lr\?\)"):
        config.load("finetune", config_file=f)
    f.write_text("aug:\n  hflipp: 0.1\n")
    with pytest.raises(UsageError, match=r"unknown config key 'aug.hflipp' in .*mine.yaml \(did you mean: aug.hflip"):
        config.load("finetune", config_file=f)
