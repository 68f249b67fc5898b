"""`maebench data prepare imagenet|coco|ade20k` from archives in the official layouts (built tiny
in tests/archive_helpers.py): the layouts the tasks read, bytes unchanged, validation images in
their devkit classes, `data check` passing, a batch loading and a step training; every bad
archive refused with one line naming it and nothing left at OUT; a killed run redone.
--download is not tested end to end (no network here, and maebench.download is another branch)."""
import hashlib
import json
import shutil

import pytest

from archive_helpers import (SYNSETS, VAL_GROUND_TRUTH, ade20k_archive, coco_archives, imagenet_archives,
                             tar_bytes, truncate, zip_file)
from maebench.cli import main

FAST = ["--set", "num_workers=0", "--set", "eval_batch_size=16", "--set", "warmup_epochs=0"]


def prepare(capsys, dataset, *args):
    rc = main(["data", "prepare", dataset, *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def files_under(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def refused(capsys, dataset, out, *args, says):
    """The command exits 1 with one error line containing every phrase of `says`, and leaves
    neither OUT nor OUT.partial."""
    rc, _, err = prepare(capsys, dataset, *args, "--out", out)
    assert rc == 1
    line = err.strip()
    assert line.startswith("maebench: error:") and "\n" not in line, err
    for phrase in says:
        assert phrase in line, (phrase, line)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    return line


# ---------------------------------------------------------------- ImageNet

def test_imagenet_unpacks_into_imagefolder_with_bytes_unchanged(tmp_path, capsys):
    train, val = imagenet_archives(tmp_path / "arch")
    out = tmp_path / "imagenet"
    rc, stdout, err = prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out)
    assert rc == 0, err
    assert "imagenet written to" in stdout
    # a partial set: one warning line with the counts, not an error
    assert err.strip() == "maebench: warning: partial imagenet set: 8 of 1,281,167 train images, 6 of 50,000 val images"
    got = files_under(out)
    expected = {f"train/{w}/{n}": b for w, images in train.items() for n, b in images.items()}
    expected |= {f"val/{w}/{n}": b for w, images in val.items() for n, b in images.items()}
    assert {k: v for k, v in got.items() if k.startswith(("train/", "val/"))} == expected
    # the devkit's ILSVRC2012_ID -> wnid mapping, checked by content: val image 1 is class 3's
    assert got[f"val/{SYNSETS[VAL_GROUND_TRUTH[0]][0]}/ILSVRC2012_val_00000001.JPEG"] == \
        val["n01484850"]["ILSVRC2012_val_00000001.JPEG"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dataset"] == "imagenet" and meta["counts"] == {"train": 8, "val": 6}
    assert meta["classes"]["n01443537"] == "goldfish, Carassius auratus" and "n00001740" not in meta["classes"]
    assert not out.with_name("imagenet.partial").exists()
    assert main(["data", "check", "--task", "classification", str(out)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_imagenet_output_trains_and_opens_in_torchvision(tmp_path, capsys, micro_checkpoint):
    from torchvision.datasets import ImageNet

    from maebench.backbones import registry
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import classification_eval

    imagenet_archives(tmp_path / "arch")
    out = tmp_path / "imagenet"
    assert prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out)[0] == 0
    image, label = ImageFolder(out, "val", transform=classification_eval(16))[0]
    assert tuple(image.shape) == (3, 16, 16) and label == 0        # ILSVRC2012_val_00000002 is n01440764's
    tv = ImageNet(str(out), split="val")                            # reads the meta.bin written beside
    assert tv.wnids == sorted(SYNSETS[i][0] for i in SYNSETS) and tv.classes[1][0] == "goldfish"
    registry.register("micro", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=16, patch_size=4)
    assert main(["run", "--task", "finetune", "--backbone", "micro", "--data", str(out), "--epochs", "1",
                 "--batch-size", "4", "--out", str(tmp_path / "run"), *FAST]) == 0


def test_imagenet_md5s_are_torchvisions():
    from torchvision.datasets.imagenet import ARCHIVE_META

    from maebench.data.archive_sources import OFFICIAL

    assert {role: (a.name, a.digest) for role, a in OFFICIAL["imagenet"].items()} == ARCHIVE_META


@pytest.mark.parametrize("damage, says", [
    (lambda d: truncate(d / "ILSVRC2012_img_train.tar"), ["ILSVRC2012_img_train.tar", "tar"]),
    (lambda d: truncate(d / "ILSVRC2012_img_val.tar"), ["ILSVRC2012_img_val.tar", "tar"]),
    (lambda d: truncate(d / "ILSVRC2012_devkit_t12.tar.gz"), ["ILSVRC2012_devkit_t12.tar.gz", "not a complete tar.gz"]),
    (lambda d: shutil.copy(d / "ILSVRC2012_img_val.tar", d / "ILSVRC2012_img_train.tar"),
     ["ILSVRC2012_img_train.tar", "ILSVRC2012_val_00000001.JPEG is not a per-class tar", "is it ILSVRC2012_img_val.tar?"]),
    (lambda d: shutil.copy(d / "ILSVRC2012_img_train.tar", d / "ILSVRC2012_img_val.tar"),
     ["ILSVRC2012_img_val.tar", "is not a validation image", "is it ILSVRC2012_img_train.tar?"]),
    (lambda d: (d / "ILSVRC2012_img_val.tar").unlink(),
     ["missing archive", "ILSVRC2012_img_val.tar", "--download"]),
], ids=["truncated-train", "truncated-val", "truncated-devkit", "val-as-train", "train-as-val", "missing-val"])
def test_imagenet_bad_archives_are_one_line_and_leave_nothing(tmp_path, capsys, damage, says):
    imagenet_archives(tmp_path / "arch")
    damage(tmp_path / "arch")
    refused(capsys, "imagenet", tmp_path / "imagenet", "--archives", tmp_path / "arch", says=says)


def test_a_tar_cut_between_members_is_truncated_not_shorter(tmp_path, capsys):
    """tarfile stops without a word where a cut-off tar ends between two members; the missing
    end-of-archive blocks give it away."""
    imagenet_archives(tmp_path / "arch")
    val = tmp_path / "arch" / "ILSVRC2012_img_val.tar"
    data = val.read_bytes().rstrip(b"\0")
    val.write_bytes(data + b"\0" * (-len(data) % 512))
    # the headers still list all six images, so only the stream sees the cut
    refused(capsys, "imagenet", tmp_path / "imagenet", "--archives", tmp_path / "arch",
            says=["ILSVRC2012_img_val.tar", "truncated tar archive"])


def test_devkit_ground_truth_must_count_the_val_images(tmp_path, capsys):
    imagenet_archives(tmp_path / "arch", ground_truth=VAL_GROUND_TRUTH + [2])
    refused(capsys, "imagenet", tmp_path / "imagenet", "--archives", tmp_path / "arch",
            says=["ILSVRC2012_devkit_t12.tar.gz", "has 7 labels", "ILSVRC2012_img_val.tar holds 6"])


def test_training_image_in_the_wrong_class_tar_is_refused(tmp_path, capsys):
    imagenet_archives(tmp_path / "arch")
    outer = {"n01440764.tar": tar_bytes({"n01443537_1.JPEG": b"\xff\xd8\xff\xd9"})}
    (tmp_path / "arch" / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(outer))
    refused(capsys, "imagenet", tmp_path / "imagenet", "--archives", tmp_path / "arch",
            says=["ILSVRC2012_img_train.tar: n01440764.tar", "n01443537_1.JPEG is not a training image n01440764_N.JPEG"])


def test_killed_preparation_is_redone_and_complete_output_kept(tmp_path, capsys):
    train, _ = imagenet_archives(tmp_path / "arch")
    out = tmp_path / "imagenet"
    partial = tmp_path / "imagenet.partial"
    (partial / "train" / "n01440764").mkdir(parents=True)                 # what a killed run leaves
    (partial / "train" / "n01440764" / "half.JPEG").write_bytes(b"\xff\xd8")
    rc, stdout, _ = prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out)
    assert rc == 0
    assert f"removing {partial} left by an interrupted preparation; starting again" in stdout
    assert not partial.exists() and not (out / "train" / "n01440764" / "half.JPEG").exists()
    assert sorted(p.name for p in (out / "train" / "n01440764").iterdir()) == sorted(train["n01440764"])
    # a complete OUT is not overwritten without --force ...
    (out / "mark").write_text("kept")
    rc, _, err = prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out)
    assert rc == 1 and "already prepared; pass --force" in err and (out / "mark").exists()
    # ... and is replaced whole with it
    assert prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out, "--force")[0] == 0
    assert not (out / "mark").exists() and (out / "meta.json").is_file()


def test_foreign_directory_is_never_replaced(tmp_path, capsys):
    imagenet_archives(tmp_path / "arch")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "photo.jpg").write_bytes(b"x")
    rc, _, err = prepare(capsys, "imagenet", "--archives", tmp_path / "arch", "--out", out, "--force")
    assert rc == 1 and "was not written by maebench" in err and (out / "photo.jpg").exists()


# ---------------------------------------------------------------- COCO

def test_coco_unpacks_into_the_2017_layout(tmp_path, capsys):
    from maebench.data.coco import CocoInstances

    images = coco_archives(tmp_path / "arch")
    out = tmp_path / "coco"
    rc, _, err = prepare(capsys, "coco", "--archives", tmp_path / "arch", "--out", out)
    assert rc == 0 and "partial coco set: 3 of 118,287 train images, 2 of 5,000 val images" in err
    got = files_under(out)
    for split, files in images.items():
        assert {k: v for k, v in got.items() if k.startswith(f"{split}2017/")} == \
            {f"{split}2017/{n}": b for n, b in files.items()}
    assert {"annotations/instances_train2017.json", "annotations/instances_val2017.json",
            "annotations/captions_val2017.json"} <= set(got)
    assert main(["data", "check", "--task", "coco", str(out)]) == 0
    image, target = CocoInstances(out / "train2017", out / "annotations" / "instances_train2017.json", train=True)[0]
    assert image.size == (16, 16) and len(target["boxes"]) == 1


@pytest.mark.parametrize("damage, says", [
    (lambda d: truncate(d / "train2017.zip"), ["train2017.zip", "not a complete zip archive"]),
    (lambda d: shutil.copy(d / "val2017.zip", d / "train2017.zip"),
     ["train2017.zip", "val2017/", "is not in the folder train2017/"]),
    (lambda d: zip_file(d / "annotations_trainval2017.zip", {"annotations/captions_train2017.json": b"{}"}),
     ["annotations_trainval2017.zip", "no annotations/instances_train2017.json"]),
    (lambda d: zip_file(d / "val2017.zip", {"val2017/000000000900.jpg": b"\xff\xd8\xff\xd9"}),
     ["val2017.zip", "lacks 1 of the 2 images", "000000000901.jpg"]),
    (lambda d: (d / "annotations_trainval2017.zip").unlink(), ["missing archive", "annotations_trainval2017.zip"]),
], ids=["truncated", "val-as-train", "other-annotations", "images-missing", "missing-zip"])
def test_coco_bad_archives_are_one_line_and_leave_nothing(tmp_path, capsys, damage, says):
    coco_archives(tmp_path / "arch")
    damage(tmp_path / "arch")
    refused(capsys, "coco", tmp_path / "coco", "--archives", tmp_path / "arch", says=says)


# ---------------------------------------------------------------- ADE20K

def test_ade20k_unpacks_into_its_layout(tmp_path, capsys):
    from maebench.data.ade20k import SegmentationPairs

    files = ade20k_archive(tmp_path / "ADEChallengeData2016.zip")
    out = tmp_path / "ADEChallengeData2016"
    rc, _, err = prepare(capsys, "ade20k", "--archive", tmp_path / "ADEChallengeData2016.zip", "--out", out)
    assert rc == 0 and "3 of 20,210 training images, 2 of 2,000 validation images" in err
    assert {k: v for k, v in files_under(out).items() if k != "meta.json"} == files
    assert main(["data", "check", "--task", "ade20k", str(out)]) == 0
    assert "classes (3" in capsys.readouterr().out                       # from the archive's objectInfo150.txt
    image, label = SegmentationPairs(out / "images" / "training", out / "annotations" / "training", num_classes=3)[0]
    assert label.shape == (16, 16) and int(label.max()) <= 255


@pytest.mark.parametrize("damage, says", [
    (lambda z: truncate(z, 0.9), ["ADEChallengeData2016.zip", "not a complete zip archive"]),
    (lambda z: zip_file(z, {"images/training/ADE_train_00000001.jpg": b"x"}),
     ["ADEChallengeData2016.zip", "images/training/ADE_train_00000001.jpg", "is not in the folder ADEChallengeData2016/"]),
    (lambda z: zip_file(z, {"ADEChallengeData2016/images/training/a.jpg": b"x",
                            "ADEChallengeData2016/annotations/training/a.png": b"x",
                            "ADEChallengeData2016/images/validation/b.jpg": b"x",
                            "ADEChallengeData2016/annotations/validation/c.png": b"x"}),
     ["ADEChallengeData2016.zip", "1 validation file(s) have no label map", "images/validation/b.jpg"]),
    (lambda z: z.unlink(), ["missing archive", "ADEChallengeData2016.zip"]),
], ids=["truncated", "no-top-folder", "unpaired", "missing"])
def test_ade20k_bad_archives_are_one_line_and_leave_nothing(tmp_path, capsys, damage, says):
    archive = tmp_path / "ADEChallengeData2016.zip"
    ade20k_archive(archive)
    damage(archive)
    refused(capsys, "ade20k", tmp_path / "ADEChallengeData2016", "--archive", archive, says=says)


def test_complete_archive_must_have_the_published_digest(tmp_path, capsys, monkeypatch):
    """A digest is checked when the archive holds the complete set (here: the tiny one made the
    complete set): a mismatch is an error naming the file, the published digest passes."""
    from maebench.data import archive_sources

    archive = tmp_path / "ADEChallengeData2016.zip"
    ade20k_archive(archive)
    monkeypatch.setitem(archive_sources.COMPLETE, "ade20k", {"training": 3, "validation": 2})
    out = tmp_path / "ADEChallengeData2016"
    refused(capsys, "ade20k", out, "--archive", archive,
            says=["ADEChallengeData2016.zip", "is not the published 219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"])
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    official = archive_sources.OFFICIAL["ade20k"]["archive"]
    monkeypatch.setitem(archive_sources.OFFICIAL["ade20k"], "archive",
                        archive_sources.Archive(official.name, official.url, "sha1", sha1))
    rc, _, err = prepare(capsys, "ade20k", "--archive", archive, "--out", out)
    assert rc == 0 and "warning" not in err
    assert json.loads((out / "meta.json").read_text())["archives"]["archive"]["digest"] == f"sha1:{sha1}"


def test_download_fetches_the_official_archive_then_prepares_it(tmp_path, capsys, monkeypatch):
    """--download: the missing archive comes from its URL (a local server here, cut once in the
    middle: the download resumes), lands under --archive's path, and is prepared as a local one."""
    from http_helpers import serve
    from maebench.data import archive_sources

    built = tmp_path / "built.zip"
    files = ade20k_archive(built)
    official = archive_sources.OFFICIAL["ade20k"]["archive"]
    with serve({"/ADEChallengeData2016.zip": built.read_bytes()}, cut_first=2000) as srv:
        monkeypatch.setitem(archive_sources.OFFICIAL["ade20k"], "archive",
                            archive_sources.Archive(official.name, srv.url("/ADEChallengeData2016.zip")))
        target, out = tmp_path / "archives" / "ADEChallengeData2016.zip", tmp_path / "ADEChallengeData2016"
        rc, _, err = prepare(capsys, "ade20k", "--archive", target, "--out", out, "--download")
        assert rc == 0, err
        assert len(srv.requests) == 2                                       # cut, then resumed with Range
    assert target.read_bytes() == built.read_bytes()
    assert {k: v for k, v in files_under(out).items() if k != "meta.json"} == files
    assert main(["data", "check", "--task", "ade20k", str(out)]) == 0


def test_a_full_disk_while_unpacking_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """The third image written fails as a full disk does: one line naming the file and the free
    space, exit 1, no OUT and no OUT.partial."""
    import errno
    import os

    from maebench.data import archive_io
    ade20k_archive(tmp_path / "ADEChallengeData2016.zip")
    real, written = archive_io.write_member, []

    def fills_up(f, dest, label, name):
        written.append(dest)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))
        return real(f, dest, label, name)

    monkeypatch.setattr(archive_io, "write_member", fills_up)
    out = tmp_path / "ADEChallengeData2016"
    rc, _, err = prepare(capsys, "ade20k", "--archive", tmp_path / "ADEChallengeData2016.zip", "--out", out)
    assert rc == 1
    line = [ln for ln in err.splitlines() if ln.startswith("maebench: error")]
    assert len(line) == 1 and f"cannot write {written[2]}: No space left on device" in line[0] and "free in" in line[0]
    assert not out.exists() and not (tmp_path / "ADEChallengeData2016.partial").exists()
