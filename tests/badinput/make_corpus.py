"""Writes the bad-input corpus of tests/test_bad_input.py into this directory (deterministic:
the same bytes on every run with the same Pillow and torch). Run it after changing a case:

    .venv/bin/python tests/badinput/make_corpus.py

Files (each the smallest input that shows one fault):

    corrupt.jpg                   a JPEG header followed by garbage (an image folder's photo)
    truncated.png                 an 8x8 ADE label map cut after half of its bytes
    label_above_classes.png       a 32x32 label map with one value 40 (for 8 classes, reduce_zero_label)
    label_wrong_size.png          a 16x8 label map (for a 32x32 image)
    coco/images/{1,2}.jpg         two 32x32 images with one square each
    coco/val.json                 a valid COCO instances file for them (one category, id 7)
    coco/missing_images.json      no 'images' list
    coco/missing_categories.json  no 'categories' list
    coco/unlisted_image.json      an annotation of image id 99, which 'images' does not list
    coco/undeclared_category.json an annotation of category 12, which 'categories' does not declare
    coco/image_twice.json         image id 1 listed twice
    coco/degenerate.json          valid, plus a zero-width box and a 2-point polygon (counted skips)
    coco/images/3.jpg             a third 32x32 image, without objects
    coco/quirk_*.json             val.json as annotation tools export it (normalised, not refused):
                                  ids_from_0, ids_repeated, category_0, no_area, no_iscrowd,
                                  no_bbox, rle_list, rle_string, image_without_annotations;
                                  quirk_all.json holds the first six at once
    truncated_checkpoint.pth      a torch checkpoint cut after half of its bytes
    other_architecture.pth        a small ResNet-style state dict (conv1, bn1, layer1, fc): not a ViT
    unknown_key.yaml              a config file with the key 'learning_rate' (the key is 'base_lr')
    negative_lr.yaml              a config file with base_lr -0.001
    typo_key.yaml                 a config file with the key 'layer_dcay' (a typo of layer_decay)

Checkpoints of a real ViT (the smallest, vit-micro, is 1.8 MB) are made at test time by
`module_prefixed_checkpoint`, `timm_with_head_checkpoint` and `pickled_checkpoint` below rather
than committed; so are the predictions of the COCO quirk files (`ground_truth_as_predictions`).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _png(array, mode: str = "L") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _square_jpeg(x0: int, y0: int, size: int) -> bytes:
    import numpy as np
    from PIL import Image
    img = np.full((32, 32, 3), 40, dtype=np.uint8)
    img[y0:y0 + size, x0:x0 + size] = (220, 60, 60)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def coco_valid() -> dict:
    """Two 32x32 images, one square object each, category 7."""
    def square(aid, image_id, x, y, s):
        return {"id": aid, "image_id": image_id, "category_id": 7, "iscrowd": 0, "area": float(s * s),
                "bbox": [x, y, s, s], "segmentation": [[x, y, x + s, y, x + s, y + s, x, y + s]]}
    return {"images": [{"id": 1, "file_name": "1.jpg", "height": 32, "width": 32},
                       {"id": 2, "file_name": "2.jpg", "height": 32, "width": 32}],
            "annotations": [square(1, 1, 8, 8, 12), square(2, 2, 14, 10, 10)],
            "categories": [{"id": 7, "name": "square"}]}


def coco_cases() -> dict[str, dict]:
    valid = coco_valid()
    cases = {}
    cases["missing_images"] = {k: v for k, v in valid.items() if k != "images"}
    cases["missing_categories"] = {k: v for k, v in valid.items() if k != "categories"}
    d = json.loads(json.dumps(valid))
    d["annotations"][1]["image_id"] = 99
    cases["unlisted_image"] = d
    d = json.loads(json.dumps(valid))
    d["annotations"][1]["category_id"] = 12
    cases["undeclared_category"] = d
    d = json.loads(json.dumps(valid))
    d["images"].append(dict(d["images"][0]))
    cases["image_twice"] = d
    d = json.loads(json.dumps(valid))
    d["annotations"] += [
        {"id": 3, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 0.0, "bbox": [20, 20, 0, 6],
         "segmentation": [[20, 20, 20, 26, 20, 23]]},                        # zero width
        {"id": 4, "image_id": 2, "category_id": 7, "iscrowd": 0, "area": 0.0, "bbox": [2, 2, 4, 4],
         "segmentation": [[2, 2, 6, 6]]},                                    # a polygon of 2 points
    ]
    cases["degenerate"] = d
    return cases


def _rle_of_square(x: int, y: int, s: int, compressed: bool) -> dict:
    import numpy as np
    m = np.zeros((32, 32), dtype=np.uint8)
    m[y:y + s, x:x + s] = 1
    if compressed:
        from pycocotools import mask as mask_utils
        return {"size": [32, 32], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode("ascii")}
    flat = m.flatten(order="F")      # column-major runs, starting with background
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
    return {"size": [32, 32], "counts": [0] * int(flat[0] == 1) + [int(r) for r in runs]}


def coco_quirks() -> dict[str, dict]:
    """val.json as common annotation tools write it: each must score like val.json itself."""
    def variant(change) -> dict:
        d = json.loads(json.dumps(coco_valid()))
        change(d)
        return d

    def drop(key):
        return lambda d: [a.pop(key) for a in d["annotations"]]

    def ids_from_0(d):
        for a in d["annotations"]:
            a["id"] -= 1

    def category_0(d):
        d["categories"][0]["id"] = 0
        for a in d["annotations"]:
            a["category_id"] = 0

    def rle(compressed):
        def change(d):
            for a in d["annotations"]:
                a["segmentation"] = _rle_of_square(*a["bbox"][:3], compressed)
        return change

    cases = {"ids_from_0": variant(ids_from_0),
             "ids_repeated": variant(lambda d: [a.update(id=5) for a in d["annotations"]]),
             "category_0": variant(category_0),
             "no_area": variant(drop("area")), "no_iscrowd": variant(drop("iscrowd")), "no_bbox": variant(drop("bbox")),
             "rle_list": variant(rle(False)), "rle_string": variant(rle(True)),
             "image_without_annotations": variant(lambda d: d["images"].append(
                 {"id": 3, "file_name": "3.jpg", "height": 32, "width": 32}))}
    everything = variant(ids_from_0)
    for change in (category_0, rle(True), drop("area"), drop("iscrowd"), drop("bbox")):
        change(everything)
    cases["all"] = everything
    return cases


def ground_truth_as_predictions(data: dict) -> list[dict]:
    """Every object of an annotation dict as it is written there, as a detection of score 1: its
    image and category ids, its mask, and its box where it has one."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
             "segmentation": a["segmentation"], **({"bbox": a["bbox"]} if "bbox" in a else {})}
            for a in data["annotations"] if not a.get("iscrowd", 0)]


def resnet_like_state() -> dict:
    import torch
    g = torch.Generator().manual_seed(0)
    return {"conv1.weight": torch.randn(8, 3, 3, 3, generator=g), "bn1.weight": torch.ones(8),
            "bn1.bias": torch.zeros(8), "bn1.running_mean": torch.zeros(8), "bn1.running_var": torch.ones(8),
            "layer1.0.conv1.weight": torch.randn(8, 8, 3, 3, generator=g),
            "fc.weight": torch.randn(10, 8, generator=g), "fc.bias": torch.zeros(10)}


def _torch_bytes(obj) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def module_prefixed_checkpoint(path: Path, seed: int = 0) -> dict:
    """A DDP-style checkpoint of a random vit-micro (patch 4, 32 px): {"model": {"module.<key>":
    tensor}}. Returns the unprefixed state dict it was made from."""
    import torch

    from maebench.backbones.vit import create_vit
    torch.manual_seed(seed)
    state = create_vit("vit-micro", img_size=32, patch_size=4).state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    return state


def timm_with_head_checkpoint(path: Path) -> Path:
    """A flat timm-style vit-micro state dict with a 10-class head (what --format mae is not)."""
    import torch

    from maebench.backbones.vit import create_vit
    torch.manual_seed(3)
    torch.save(create_vit("vit-micro", img_size=32, patch_size=4, num_classes=10).state_dict(), path)
    return path


def pickled_checkpoint(path: Path) -> Path:
    """vit-micro weights next to a pickled optimizer object: reading it needs full unpickling."""
    import torch

    from maebench.backbones.vit import create_vit
    model = create_vit("vit-micro", img_size=32, patch_size=4)
    torch.save({"model": model.state_dict(), "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}, path)
    return path


def files() -> dict[str, bytes]:
    import numpy as np
    out = {}
    out["corrupt.jpg"] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"not a jpeg " * 8
    label = np.tile(np.arange(8, dtype=np.uint8), (8, 1)) + 1          # values 1..8: valid for 8 classes
    whole = _png(label)
    out["truncated.png"] = whole[: len(whole) // 2]
    above = np.tile(np.arange(32, dtype=np.uint8) % 8 + 1, (32, 1))
    above[3, 3] = 40
    out["label_above_classes.png"] = _png(above)
    out["label_wrong_size.png"] = _png(np.ones((8, 16), dtype=np.uint8))   # 16 wide, 8 high
    out["coco/images/1.jpg"] = _square_jpeg(8, 8, 12)
    out["coco/images/2.jpg"] = _square_jpeg(14, 10, 10)
    out["coco/val.json"] = json.dumps(coco_valid(), indent=1).encode()
    for name, data in coco_cases().items():
        out[f"coco/{name}.json"] = json.dumps(data, indent=1).encode()
    out["coco/images/3.jpg"] = _square_jpeg(0, 0, 0)
    for name, data in coco_quirks().items():
        out[f"coco/quirk_{name}.json"] = json.dumps(data, indent=1).encode()
    whole = _torch_bytes({"model": resnet_like_state()})
    out["truncated_checkpoint.pth"] = whole[: len(whole) // 2]
    out["other_architecture.pth"] = whole
    out["unknown_key.yaml"] = b"epochs: 1\nlearning_rate: 0.001   # the key is base_lr\n"
    out["negative_lr.yaml"] = b"epochs: 1\nbase_lr: -0.001\n"
    out["typo_key.yaml"] = b"epochs: 1\nlayer_dcay: 0.7\n"
    return out


def main() -> None:
    total = 0
    for name, data in files().items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    print(f"wrote {len(files())} files, {total / 1024:.1f} KiB, to {HERE}")


if __name__ == "__main__":
    main()
