"""Tiny archives in the exact layouts of the official ones: ILSVRC2012 (a train tar of per-class
tars, a flat val tar, a devkit tar.gz with data/meta.mat and the validation ground truth), COCO
2017 (three zips) and ADE20K (ADEChallengeData2016.zip). Every image has distinct bytes, so a
test can tell by content where each one landed."""
import io
import json
import tarfile
import zipfile

import numpy as np
from PIL import Image

# ILSVRC2012_ID -> (WNID, words); 1..3 are leaves, 1001 an inner node (num_children 3) that
# the devkit lists too and that must not become a class
SYNSETS = {1: ("n01440764", "tench, Tinca tinca"), 2: ("n01443537", "goldfish, Carassius auratus"),
           3: ("n01484850", "great white shark, white shark")}
INNER = (1001, "n00001740", "entity")
TRAIN_PER_CLASS = {"n01440764": 3, "n01443537": 2, "n01484850": 3}
VAL_GROUND_TRUTH = [3, 1, 2, 1, 3, 2]   # the ILSVRC2012_ID of val image 1, 2, ...


def jpeg(seed: int, size=(16, 16)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def png_label(seed: int, size=(16, 16), classes=3) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, classes + 1, (size[1], size[0]), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], mode="w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def meta_mat(synsets=SYNSETS, inner=INNER) -> bytes:
    """data/meta.mat as the devkit has it: a (N, 1) struct array 'synsets' with the fields
    torchvision's parse_meta_mat reads by position (ILSVRC2012_ID, WNID, words, gloss,
    num_children, ...)."""
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i, w, words, 0, []) for i, (w, words) in synsets.items()]
    if inner:
        rows.append((inner[0], inner[1], inner[2], len(synsets), list(synsets)))
    table = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for k, (i, wnid, words, children, kids) in enumerate(rows):
        table[k, 0] = (np.array([[i]], dtype=np.uint16), np.array([wnid]), np.array([words]),
                       np.array([f"gloss of {wnid}"]), np.array([[children]], dtype=np.uint8),
                       np.array([kids], dtype=np.uint16).reshape(1, -1), np.array([[0]], dtype=np.uint8),
                       np.array([[1300]], dtype=np.uint16))
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": table})
    return buf.getvalue()


def imagenet_archives(folder, *, ground_truth=VAL_GROUND_TRUTH, train_per_class=TRAIN_PER_CLASS):
    """Write the three ILSVRC2012 archives into `folder`; return (train, val) as
    {wnid: {file name: bytes}} - where every image must land."""
    folder.mkdir(parents=True, exist_ok=True)
    train, val = {}, {}
    outer = {}
    for c, (wnid, n) in enumerate(sorted(train_per_class.items())):
        images = {f"{wnid}_{100 + k}.JPEG": jpeg(1000 * c + k) for k in range(n)}
        train[wnid] = images
        outer[f"{wnid}.tar"] = tar_bytes(images)
    (folder / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(outer))
    flat = {}
    for number in range(1, len(VAL_GROUND_TRUTH) + 1):   # six images, whatever the ground truth says
        class_id = ground_truth[number - 1]
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        flat[name] = jpeg(50_000 + number)
        val.setdefault(SYNSETS[class_id][0], {})[name] = flat[name]
    (folder / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes(flat))
    devkit = {"ILSVRC2012_devkit_t12/data/meta.mat": meta_mat(),
              "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
                  "".join(f"{i}\n" for i in ground_truth).encode()}
    (folder / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(tar_bytes(devkit, mode="w:gz"))
    return train, val


def zip_file(path, members: dict[str, bytes], dirs=()) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in members.items():
            zf.writestr(name, data)


def coco_instances(images: dict[str, bytes], first_id: int) -> dict:
    entries, anns = [], []
    for k, name in enumerate(sorted(images)):
        w, h = Image.open(io.BytesIO(images[name])).size
        entries.append({"id": first_id + k, "file_name": name, "width": w, "height": h})
        anns.append({"id": first_id + k, "image_id": first_id + k, "category_id": 1, "iscrowd": 0,
                     "bbox": [2.0, 2.0, 8.0, 8.0], "area": 64.0,
                     "segmentation": [[2.0, 2.0, 10.0, 2.0, 10.0, 10.0, 2.0, 10.0]]})
    return {"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "thing", "supercategory": "x"}],
            "info": {"year": 2017}, "licenses": []}


def coco_archives(folder, n_train=3, n_val=2):
    """Write train2017.zip, val2017.zip and annotations_trainval2017.zip; return
    {split: {file name: bytes}}."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {"train": {f"{k + 1:012d}.jpg": jpeg(7000 + k) for k in range(n_train)},
              "val": {f"{k + 900:012d}.jpg": jpeg(8000 + k) for k in range(n_val)}}
    for split, files in images.items():
        zip_file(folder / f"{split}2017.zip", {f"{split}2017/{n}": b for n, b in files.items()}, dirs=[f"{split}2017/"])
    anns = {f"annotations/instances_{s}2017.json": json.dumps(coco_instances(images[s], 1 if s == "train" else 900))
            .encode() for s in ("train", "val")}
    anns["annotations/captions_val2017.json"] = b'{"annotations": []}'
    zip_file(folder / "annotations_trainval2017.zip", anns, dirs=["annotations/"])
    return images


def ade20k_archive(path, n_train=3, n_val=2):
    """Write ADEChallengeData2016.zip; return {path inside ADEChallengeData2016/: bytes}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {"objectInfo150.txt": b"Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n2\t0.1\t1\t1\tbuilding;edifice\n"
                                  b"3\t0.1\t1\t1\tsky\n",
             "sceneCategories.txt": b"ADE_train_00000001 bathroom\n"}
    for split, prefix, n, seed in (("training", "ADE_train", n_train, 9000), ("validation", "ADE_val", n_val, 9500)):
        for k in range(1, n + 1):
            files[f"images/{split}/{prefix}_{k:08d}.jpg"] = jpeg(seed + k)
            files[f"annotations/{split}/{prefix}_{k:08d}.png"] = png_label(k)
    zip_file(path, {f"ADEChallengeData2016/{n}": b for n, b in files.items()}, dirs=["ADEChallengeData2016/"])
    return files


def truncate(path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
