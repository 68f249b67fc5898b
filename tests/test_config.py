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
    ("base_lr=-0.1", "'base_lr' must be >= 0"),
    ("mask_ratio=1.0", "'mask_ratio' must lie strictly between 0 and 1"),
    ("mask_ratio=0", "'mask_ratio' must lie strictly between 0 and 1"),
    ("epochs=0", "'epochs' must be > 0"),
    ("layer_decay=1.5", "'layer_decay' must lie in"),
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
