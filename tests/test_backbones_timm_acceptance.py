"""Acceptance of issue 15: a checkpoint in the original DINOv2 layout (patch 14, 4 register
tokens), registered with --timm, runs `maebench run --task coco` and `--task ade20k` end to end on
the embedded data written by `maebench data prepare shapes`. The tiny model has vit-micro's width
and depth, so the protocols' CPU-scale recipes apply; 224 px is the smallest detection canvas
that is a multiple of both 32 and the patch (about a minute on one core for the two runs)."""
import torch

from maebench import cli
from maebench.results import ResultsStore
from timm_releases import dinov2_original

MICRO = {"embed_dim": 96, "depth": 4, "num_heads": 3}


def test_a_dinov2_checkpoint_with_registers_runs_coco_and_ade20k_end_to_end(tmp_path, capsys):
    import timm
    torch.manual_seed(0)
    src = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224, **MICRO)
    path = tmp_path / "dinov2_vitmicro14_reg4_pretrain.pth"
    torch.save(dinov2_original(src.state_dict()), path)
    data = tmp_path / "shapes"
    assert cli.main(["data", "prepare", "shapes", "--out", str(data)]) == 0
    args = [a for k, v in MICRO.items() for a in ("--timm-arg", f"{k}={v}")]
    assert cli.main(["backbones", "register", "d2", "--checkpoint", str(path), "--timm", "vit_small_patch14_reg4_dinov2",
                     *args, "--img-size", "224"]) == 0
    assert "read as dinov2" in capsys.readouterr().out

    common = ["--backbone", "d2", "--epochs", "1", "--set", "num_workers=0"]
    assert cli.main(["run", "--task", "coco", *common, "--data", str(data / "coco"), "--neck", "simple-pyramid",
                     "--batch-size", "8", "--set", "img_size=224", "--set", "max_size=224", "--set", "min_size=[224]",
                     "--set", "eval_batch_size=8"]) == 0
    assert cli.main(["run", "--task", "ade20k", *common, "--data", str(data / "ade20k"), "--batch-size", "16",
                     "--set", "crop_size=56", "--set", "stride=56", "--set", "img_size=56"]) == 0
    (coco,) = ResultsStore().rows(task="coco", backbone="d2")
    (ade,) = ResultsStore().rows(task="ade20k", backbone="d2")
    assert coco.status == ade.status == "done" and "mIoU" in ade.metrics
    assert any(k.startswith("bbox") for k in coco.metrics)
    assert coco.config["backbone_family"] == "self-distillation"
