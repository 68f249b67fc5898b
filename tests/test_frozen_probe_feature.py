"""The linear-probe sweep offers each family's documented probe feature where it differs from
[cls] and the patch mean (backbones/timm_family.py): DINOv2's [cls] concatenated with the mean of
the patch tokens (registers left out) as 'cls+avg' heads read from the cached [cls] and avg
columns; EVA-02's fc_norm of the mean and SigLIP's attention pool as a channel of their own; for
maebench's ViTs, CLIP and DeiT III it is the [cls] token, so the grid does not grow."""
import pytest
import torch

from maebench.tasks import features, linear_sweep
from maebench.tasks.linear_sweep import HeadSpec


def _specs(*pools):
    return [HeadSpec(lr, 0.0, p, b) for p in pools for b in (1, 4) for lr in (0.1, 1.0)]


def test_probe_heads_follow_the_family():
    grid = _specs("cls", "avg", "probe")
    plain, note = linear_sweep.resolve_probe(grid, None)                    # maebench ViT: probe = [cls]
    assert plain == _specs("cls", "avg") and linear_sweep.channels(plain) == ("cls", "avg")
    assert linear_sweep.resolve_probe(grid, "token")[0] == _specs("cls", "avg")   # CLIP, DeiT III
    dino, note = linear_sweep.resolve_probe(grid, "cls+avg")
    assert dino == _specs("cls", "avg", "cls+avg") and "cls+avg" in note
    assert linear_sweep.channels(dino) == ("cls", "avg")                    # no extra extraction
    eva, _ = linear_sweep.resolve_probe(grid, "avg")
    assert eva == grid and linear_sweep.channels(eva) == ("cls", "avg", "probe")
    siglip, note = linear_sweep.resolve_probe(grid, "map")                  # no [cls] token
    assert siglip == _specs("avg", "probe") and "no [cls] token" in note


def test_a_cls_plus_avg_head_is_the_head_on_the_concatenated_feature():
    """A 'cls+avg' head reading the [cls] and avg columns of [N, 2, L, D] trains exactly as a head on
    the documented feature [cls ‖ avg] given as one input."""
    g = torch.Generator().manual_seed(0)
    n, d, nc = 64, 6, 3
    feats = torch.randn(n, 2, 4, d, generator=g)
    y = torch.randint(0, nc, (n,), generator=g)
    cfg = {"epochs": 3, "batch_size": 16, "warmup_epochs": 0}
    head = HeadSpec(1.0, 1e-4, "cls+avg", 1)
    grid = [HeadSpec(1.0, 0.0, "cls", 4), head, HeadSpec(0.3, 0.0, "avg", 1)]
    bank = linear_sweep.train(grid, feats, y, cfg, pooling=("cls", "avg"), num_classes=nc, seed=0, device="cpu")
    concat = torch.cat([feats[:, 0, -1], feats[:, 1, -1]], dim=1)[:, None, None, :]          # [N, 1, 1, 2D]
    alone = linear_sweep.train([HeadSpec(1.0, 1e-4, "cls", 1)], concat, y, cfg, pooling=("cls",), num_classes=nc,
                               seed=0, device="cpu")
    assert torch.allclose(bank.head_weight(1), alone.head_weight(0), atol=1e-5)
    assert torch.allclose(bank.b[bank.order.index(1)], alone.b[alone.order.index(0)], atol=1e-6)
    assert bank.evaluate(feats, y)[1]["top1"] == alone.evaluate(concat, y)[0]["top1"]


@pytest.mark.parametrize("name,img,probe", [("vit_small_patch14_reg4_dinov2", 56, "cls+avg"),
                                            ("eva02_base_patch14_224.mim_in22k", 56, "avg"),
                                            ("vit_base_patch16_siglip_224", 64, "map")])
def test_the_swept_inputs_contain_the_documented_feature_of_the_last_block(name, img, probe):
    from maebench.backbones.timm_family import probe_features
    from timm_releases import source_model
    model = source_model(name, img).eval()
    model.probe_feature = probe
    x = torch.randn(2, 3, img, img, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = probe_features(model, x)
        if probe == "cls+avg":                 # registers are prefix tokens: not in the patch mean
            f = features.token_features(model, x, 2, ("cls", "avg"))
            got = torch.cat([f[:, 0, -1], f[:, 1, -1]], dim=1)
        else:
            f = features.token_features(model, x, 2, ("avg", "probe"))
            got = f[:, 1, -1]
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


def test_the_sweep_on_a_dinov2_backbone_offers_its_cls_plus_avg_feature(tmp_path, capsys):
    from maebench import cli
    from maebench.data.shapes import ShapesOptions, prepare
    from maebench.results import ResultsStore
    from timm_releases import FAMILIES, TIMM_ARGS, hub, source_model, write
    name, img, _ = FAMILIES["dinov2-reg4"]
    write(tmp_path / "model.safetensors", hub(source_model(name, img).state_dict()))
    assert cli.main(["backbones", "register", "d", "--checkpoint", str(tmp_path / "model.safetensors"),
                     "--timm", name, *TIMM_ARGS, "--img-size", str(img)]) == 0
    data = prepare(tmp_path / "data", ShapesOptions(img_size=img, classes=3, train_per_class=10, val_per_class=2),
                   kinds=("classification",))["classification"]
    assert cli.main(["run", "--task", "linprobe", "--backbone", "d", "--data", str(data), "--sweep", "--epochs", "2",
                     "--batch-size", "8", "--set", "num_workers=0", "--set", "warmup_epochs=0",
                     "--search-space", "base_lr=0.3,3.0", "--search-space", "weight_decay=0.0",
                     "--search-space", "feature_blocks=1"]) == 0
    assert "probe feature (cls+avg) as 'cls+avg' heads" in capsys.readouterr().out
    (row,) = ResultsStore().rows(task="linprobe")
    sw = row.metrics["sweep"]
    assert sw["grid"]["pooling"] == ["cls", "avg", "cls+avg"] and sw["grid"]["probe_feature"] == "cls+avg"
    assert [h["pooling"] for h in sw["heads"]] == ["cls"] * 2 + ["avg"] * 2 + ["cls+avg"] * 2
