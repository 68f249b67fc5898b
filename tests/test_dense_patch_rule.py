"""`maebench run --task coco` and `--task ade20k` at the protocol defaults on every backbone
family, patch 14 included (issue 29 item 1): a canvas / crop that is a multiple of 16 and 32 but
not of 14 (64 px here, as 1024 and 512 are at paper scale) runs, because the patch rule resamples
a patch-14 embedding to 16 (tasks/pyramid.py) for every neck; the row and the log line say so.
Tiny random models (timm_releases.py: width 32, depth 4), 2 training images, one step each; the
only --sets shrink sizes."""
import pytest
import torch

from maebench import cli
from maebench.backbones.vit import create_vit
from maebench.results import ResultsStore
from timm_releases import FAMILIES, TIMM_ARGS, shared_beit_tables, source_model, write

# every family of the catalogue: the timm-built ones (one release format each) and the MAE ViT
# (official layout) at patch 14, as MAE ViT-H/14
CASES = [*FAMILIES, "mae-p14"]
SIDE = 64                                          # a multiple of 16 and 32, not of 14
COCO_SETS = [f"img_size={SIDE}", f"max_size={SIDE}", f"min_size=[{SIDE}]", "num_workers=0",
             "model.fpn_channels=16", "model.representation_size=32", "model.mask_head_dim=16",
             "model.rpn_batch_size_per_image=16", "model.box_batch_size_per_image=16"]
ADE_SETS = [f"img_size={SIDE}", f"crop_size={SIDE}", f"stride={SIDE}", "channels=16", "aux_channels=8",
            "num_workers=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from maebench.data import shapes
    root = tmp_path_factory.mktemp("sets")
    shapes.prepare(root, shapes.ShapesOptions(coco_img_size=SIDE, coco_train_images=2, coco_val_images=1,
                                              ade_img_size=SIDE, ade_train_images=2, ade_val_images=1),
                   kinds=("coco", "ade20k"))
    return root


def register(case: str, tmp_path) -> int:
    """Register a tiny random model of `case` as 'b'; its patch size."""
    path = tmp_path / "release.pth"
    if case == "mae-p14":
        torch.manual_seed(0)
        torch.save({"model": create_vit("vit-micro", img_size=56, patch_size=14).state_dict()}, path)
        args = ["--arch", "vit-micro", "--patch-size", "14", "--img-size", "56", "--family", "mae-norm-pixel"]
    else:
        name, img, writers = FAMILIES[case]
        src = source_model(name, img)
        if case == "beit2":
            shared_beit_tables(src)
        write(path, next(iter(writers.values()))(src.state_dict()))
        args = ["--timm", name, *TIMM_ARGS, "--img-size", str(img)]
    assert cli.main(["backbones", "register", "b", "--checkpoint", str(path), *args]) == 0
    from maebench.backbones import registry
    return registry.entry("b").patch_size


def run(task: str, data, sets: list[str], *extra: str) -> None:
    argv = ["run", "--task", task, "--backbone", "b", "--data", str(data / ("coco" if task == "coco" else "ade20k")),
            "--epochs", "1", "--batch-size", "2", *extra]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 0


@pytest.mark.parametrize("case", CASES)
def test_coco_and_ade20k_run_at_the_defaults_on_every_family(case, data, tmp_path, capsys):
    patch = register(case, tmp_path)
    run("coco", data, COCO_SETS)
    run("ade20k", data, ADE_SETS)
    out = capsys.readouterr().out
    rows = {r.task: r for r in ResultsStore().rows()}
    assert rows["coco"].status == rows["ade20k"].status == "done"
    assert rows["coco"].config["neck"] == "vit-fpn"          # the default neck
    if patch == 14:
        for task in ("coco", "ade20k"):
            assert rows[task].config["patch_rule"] == "resample-14-to-16"
            assert f"{task}: b (" in out and "patch 14 resampled to 16 (patch_rule)" in out
    else:                                                    # power-of-two patches: config as before
        assert "patch_rule" not in rows["coco"].config and "patch_rule" not in rows["ade20k"].config


@pytest.mark.parametrize("neck", ["simple-pyramid", "vitdet"])
def test_the_other_necks_take_a_patch_14_backbone_at_a_canvas_14_does_not_divide(neck, data, tmp_path):
    register("dinov2", tmp_path)
    run("coco", data, COCO_SETS + ["vitdet.window_size=2", "vitdet.global_blocks=[3]"], "--neck", neck)
    (row,) = ResultsStore().rows(task="coco")
    assert row.status == "done" and row.config["neck"] == neck and row.config["patch_rule"] == "resample-14-to-16"


def test_a_resampled_patch_embedding_answers_a_resized_patch_as_the_original_did():
    """registry.load(resample_patch=16): the token grid kept, the kernel resampled (timm's
    resample_patch_embed, detectron2's p14to16), so an image resized by 16/14 gives the same
    patch embeddings up to the resize's interpolation."""
    from maebench.backbones.build import resample_patch_embed
    torch.manual_seed(0)
    vit = create_vit("vit-micro", img_size=56, patch_size=14)
    x = torch.randn(1, 3, 56, 56)
    before = vit.patch_embed.proj(x)
    resample_patch_embed(vit, 16)
    assert vit.patch_embed.patch_size == (16, 16) and tuple(vit.patch_embed.img_size) == (64, 64)
    assert tuple(vit.patch_embed.grid_size) == (4, 4)
    after = vit.patch_embed.proj(torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic",
                                                                  align_corners=False))
    assert after.shape == before.shape
    assert torch.nn.functional.cosine_similarity(after.flatten(), before.flatten(), dim=0) > 0.5
    assert vit(torch.randn(1, 3, 64, 64)).shape[0] == 1


def test_a_patch_that_divides_the_canvas_and_crop_runs_as_it_is():
    """The rule resamples only where it must: 14 divides a 224 canvas and a 56 crop."""
    from maebench.tasks.pyramid import apply_patch_rule
    for side in (224, 56, 448):
        cfg = {}
        assert apply_patch_rule(cfg, 14, side) == 14 and cfg == {}
    cfg = {}
    assert apply_patch_rule(cfg, 14, 1024) == 16 and cfg == {"patch_rule": "resample-14-to-16"}
    cfg = {}
    assert apply_patch_rule(cfg, 16, 512) == 16 and cfg == {}
