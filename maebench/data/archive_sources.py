"""The official archives of ImageNet-1K (ILSVRC2012), COCO 2017 and ADE20K (SceneParsing
ADEChallengeData2016): file names, URLs, published digests and complete counts, in one table;
finding them in a directory, or downloading them with maebench.download.fetch.

Digests are only those published: ImageNet's md5s are the ones image-net.org's download page
lists (and torchvision.datasets.imagenet.ARCHIVE_META repeats); ADE20K's sha1 is the one
gluon-cv's ade20k preparation script checks (the CSAIL page publishes none); cocodataset.org
publishes none for COCO, so COCO archives are not digest-checked (each zip member still carries
its CRC). A digest is checked only when the archive holds the complete official set, since a
partial or repacked archive cannot match it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maebench.errors import MaebenchError


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    algorithm: str | None = None   # of the published digest
    digest: str | None = None


_IMAGENET = "https://image-net.org/data/ILSVRC/2012/"
OFFICIAL: dict[str, dict[str, Archive]] = {
    "imagenet": {
        "devkit": Archive("ILSVRC2012_devkit_t12.tar.gz", _IMAGENET + "ILSVRC2012_devkit_t12.tar.gz",
                          "md5", "fa75699e90414af021442c21a62c3abf"),
        "val": Archive("ILSVRC2012_img_val.tar", _IMAGENET + "ILSVRC2012_img_val.tar",
                       "md5", "29b22e2961454d5413ddabcf34fc5622"),
        "train": Archive("ILSVRC2012_img_train.tar", _IMAGENET + "ILSVRC2012_img_train.tar",
                         "md5", "1d675b47d978889d74fa0da5fadfb00e"),
    },
    "coco": {
        "annotations": Archive("annotations_trainval2017.zip",
                               "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"),
        "val": Archive("val2017.zip", "http://images.cocodataset.org/zips/val2017.zip"),
        "train": Archive("train2017.zip", "http://images.cocodataset.org/zips/train2017.zip"),
    },
    "ade20k": {
        "archive": Archive("ADEChallengeData2016.zip",
                           "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                           "sha1", "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"),
    },
}
COMPLETE = {  # images per split of the complete official sets
    "imagenet": {"train": 1_281_167, "val": 50_000},
    "coco": {"train": 118_287, "val": 5_000},
    "ade20k": {"training": 20_210, "validation": 2_000},
}
_WHERE = {"imagenet": "image-net.org (an account is needed: log in, then download the ILSVRC2012 files)",
          "coco": "cocodataset.org", "ade20k": "the MIT Scene Parsing benchmark (sceneparsing.csail.mit.edu)"}


def locate(dataset: str, folder: Path, download: bool = False, files: dict[str, Path] | None = None) -> dict[str, Path]:
    """role -> path of each official archive of `dataset` in `folder` (or at files[role]);
    with download=True a missing one is fetched there first, else it is an error naming it."""
    found = {}
    for role, archive in OFFICIAL[dataset].items():
        path = Path(files[role]) if files and role in files else folder / archive.name
        if not path.is_file():
            if not download:
                raise MaebenchError(f"missing archive {path} (expected the official {archive.name} from "
                                    f"{_WHERE[dataset]}: {archive.url}); put it there or pass --download")
            path = _download(archive, path)
        found[role] = path
    return found


def _download(archive: Archive, path: Path) -> Path:
    """The official archive, resumable and renamed into place when complete (maebench/download.py);
    its published digest (md5 / sha1, not sha256) is checked when the set is read."""
    from maebench.download import fetch
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(fetch(archive.url, path, sha256=None, expected_size=None, progress=True))


def check_digest(archive: Archive, actual: str | None, path: Path) -> str | None:
    """Raise when `actual` (computed with archive.algorithm) differs from the published digest;
    return a line for meta.json's record, or None when nothing was published."""
    if not archive.digest or actual is None:
        return None
    if actual != archive.digest:
        raise MaebenchError(f"{path}: {archive.algorithm} {actual} is not the published {archive.digest} of "
                            f"{archive.name}, although it holds the complete set; the archive was altered or repacked")
    return f"{archive.algorithm}:{actual}"


def shortfall(dataset: str, counts: dict[str, int]) -> str | None:
    """One warning line when `counts` (split -> images) are below the complete set's, else None."""
    complete = COMPLETE[dataset]
    if all(counts.get(split) == n for split, n in complete.items()):
        return None
    return (f"partial {dataset} set: " + ", ".join(f"{counts.get(split, 0):,} of {n:,} {split} images"
                                                 for split, n in complete.items()))


def is_complete(dataset: str, split: str, count: int) -> bool:
    return count == COMPLETE[dataset][split]
