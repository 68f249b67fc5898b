"""`maebench data prepare ade20k`: the official ADEChallengeData2016.zip -> the
ADEChallengeData2016 layout the ade20k task reads (images/{training,validation}/*.jpg,
annotations/{training,validation}/*.png, objectInfo150.txt, ...), bytes as they are in the zip.
Every image must have its label map and every label map its image, split by split."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from maebench.data.archive_io import extract_zip, open_zip, zip_files
from maebench.disk import file_digest
from maebench.data.archive_sources import OFFICIAL, check_digest, is_complete, shortfall
from maebench.data.output import write_meta
from maebench.data.staging import staged
from maebench.errors import MaebenchError

TOP = "ADEChallengeData2016"
SPLITS = ("training", "validation")


def prepare(archive: Path, out: Path, force: bool = False, say=print) -> dict:
    """Write `out` (the ADEChallengeData2016 folder itself) from the zip; return meta.json's
    content (with 'warning' when the set is partial)."""
    with open_zip(archive) as zf:
        files = zip_files(zf, archive, TOP)
    counts = _paired_counts([rel for _, rel in files], archive)
    digest = None
    if all(is_complete("ade20k", split, n) for split, n in counts.items()):
        official = OFFICIAL["ade20k"]["archive"]
        digest = check_digest(official, file_digest(archive, official.algorithm), archive)
    with staged(out, force, say) as tmp:
        with open_zip(archive) as zf:
            extract_zip(zf, files, tmp, archive)
        meta = {"dataset": "ade20k", "format": "ade20k", "reduce_zero_label": True, "ignore_index": 255,
                "counts": counts, "archives": {"archive": {"file": str(archive), "digest": digest}}}
        write_meta(tmp, meta)
    warning = shortfall("ade20k", counts)
    if warning:
        meta["warning"] = warning
    return meta


def _paired_counts(rels: list[Path], archive: Path) -> dict[str, int]:
    """split -> image/label pairs, after checking that both folders of every split are there
    and that images and label maps match by name."""
    found = {(kind, split): {} for kind in ("images", "annotations") for split in SPLITS}
    for rel in rels:
        if len(rel.parts) == 3 and (rel.parts[0], rel.parts[1]) in found:
            found[(rel.parts[0], rel.parts[1])][PurePosixPath(rel.parts[2]).stem] = rel
    counts = {}
    for split in SPLITS:
        images, labels = found[("images", split)], found[("annotations", split)]
        if not images or not labels:
            what = "images" if not images else "annotations"
            raise MaebenchError(f"{archive}: no {TOP}/{what}/{split}/ files (not the ADE20K SceneParsing archive)")
        for have, lack, what in ((images, labels, "label map"), (labels, images, "image")):
            missing = sorted(set(have) - set(lack))
            if missing:
                raise MaebenchError(f"{archive}: {len(missing)} {split} file(s) have no {what}, e.g. "
                                    f"{TOP}/{have[missing[0]].as_posix()}")
        counts[split] = len(images)
    return counts
