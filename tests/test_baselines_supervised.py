"""The supervised (DeiT) recipe's pieces: config merge per architecture, the training transform
(RandAugment that survives 0-bit posterize on current Pillow) and the loss with mixup."""
import numpy as np
import pytest
import torch
from PIL import Image

from maebench.backbones.pretraining.supervised_method import load_config, train_transform
from maebench.classification import classification_loss, posterize_any_bits
from maebench.errors import UsageError


def _spec(*, sets=(), epochs=None, **options):
    from maebench.backbones.pretraining import METHODS
    from maebench.runspec import RunSpec
    return RunSpec(program=METHODS["supervised"], sets=tuple(sets), epochs=epochs, options=options)


def test_config_takes_the_arch_table_of_the_run_and_flags_win():
    cfg = load_config(_spec(arch="vit-micro", epochs=3.0))
    assert (cfg["arch"], cfg["img_size"], cfg["patch_size"], cfg["epochs"]) == ("vit-micro", 32, 4, 3)
    assert isinstance(cfg["epochs"], int)
    # the architecture may come from --set; its by_arch table still applies
    cfg = load_config(_spec(sets=["arch=vit-large"]))
    assert (cfg["base_lr"], cfg["weight_decay"], cfg["drop_path"]) == (1e-4, 0.3, 0.2)
    with pytest.raises(UsageError, match="config key 'epochs' in --epochs expects"):
        load_config(_spec(epochs=0.5))


def test_zero_bit_posterize_gives_a_black_image_instead_of_crashing():
    img = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    assert np.asarray(posterize_any_bits(img, 0)).max() == 0
    assert np.asarray(posterize_any_bits(img, 1)).max() == 128
    assert posterize_any_bits(img, 8) is img


def test_train_transform_runs_randaugment_at_full_magnitude():
    cfg = load_config(_spec(arch="vit-micro", sets=["aug.rand_augment=rand-m10-n4-inc1"]))
    t = train_transform(cfg)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    for _ in range(50):      # magnitude 10, 4 ops: posterize to 0 bits comes up often
        x = t(img)
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all()


def test_mixup_makes_smoothed_soft_targets_for_a_soft_target_loss():
    cfg = load_config(_spec(arch="vit-micro", sets=["aug.mixup=0.8", "aug.cutmix=1.0"]))
    loss = classification_loss(cfg, num_classes=4)
    criterion, mixup = loss.criterion, loss.mixup
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    _, soft = mixup(x, y)
    assert soft.shape == (4, 4) and torch.allclose(soft.sum(1), torch.ones(4))
    assert soft.min() >= 0.1 / 4 - 1e-6                          # label smoothing 0.1 spread over 4
    logits = torch.randn(4, 4)
    expected = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    assert criterion(logits, soft).item() == pytest.approx(expected.item(), rel=1e-6)
    cfg["aug"].update(mixup=0.0, cutmix=0.0)
    loss = classification_loss(cfg, num_classes=4)
    criterion, mixup = loss.criterion, loss.mixup
    assert mixup is None and criterion(logits, y).item() > 0


def test_one_mixup_rule_for_fine_tuning_and_supervised_pretraining():
    """Both protocols read the same classification_loss / uses_mixup (maebench.classification):
    mixup_prob 0 means no mixing, so no even-batch rule; label smoothing from either layout."""
    from maebench import config
    from maebench.classification import uses_mixup
    sup = load_config(_spec(arch="vit-micro", sets=["aug.mixup=0.8", "aug.cutmix=1.0"]))
    fin = config.load("finetune", arch="vit-tiny")
    for cfg in (sup, fin):
        assert uses_mixup(cfg) and classification_loss(cfg, 4).mixup is not None
        cfg["aug"]["mixup_prob"] = 0.0
        assert not uses_mixup(cfg) and classification_loss(cfg, 4).mixup is None
    assert classification_loss(sup, 4).criterion.smoothing == sup["label_smoothing"]
    assert classification_loss(fin, 4).criterion.smoothing == fin["aug"]["label_smoothing"]
