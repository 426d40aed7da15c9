"""trainer.data.root and the readers through it: a dataset is read only inside its own folder.

Each reader is given a dataset that names a file outside it (an absolute path, `..`, a symlink out,
the way an annotation file or a split can), with a real file of another "tenant" there; the reader
refuses it, and nothing of the other data reaches the records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from trainer.data import brainwash, coco, voc, yolo
from trainer.data.images import ImageDataset
from trainer.data.records import BadDataPolicy, DataError
from trainer.data.root import DataRoot, OutsideRoot
from trainer.data.sources import open_dataset

CATEGORIES = [{"id": 1, "name": "cat"}]


def image(path: Path, w: int = 40, h: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (10, 200, 30)).save(path)
    return path


@pytest.fixture
def two_tenants(tmp_path: Path) -> tuple[Path, Path]:
    """data/mine (this job's source) and data/theirs (another tenant's folder, with an image and a
    COCO file of its own)."""
    mine, theirs = tmp_path / "data" / "mine", tmp_path / "data" / "theirs"
    image(theirs / "images" / "secret.png", 64, 48)
    coco_file(
        theirs, [{"id": 9, "file_name": "secret.png", "width": 64, "height": 48}], "instances_train.json"
    )
    mine.mkdir(parents=True)
    return mine, theirs


def coco_file(root: Path, images: list[dict], name: str = "instances_train.json") -> Path:
    path = root / "annotations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    annotations = [
        {"id": i, "image_id": im["id"], "category_id": 1, "bbox": [1, 1, 10, 10]}
        for i, im in enumerate(images)
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


# --- DataRoot -------------------------------------------------------------------------------------


def test_inside_outside_symlinks_and_excluded(tmp_path):
    (tmp_path / "ds" / "sub").mkdir(parents=True)
    (tmp_path / "ds" / "sub" / "a.txt").write_text("a")
    (tmp_path / "out.txt").write_text("secret")
    (tmp_path / "ds" / "link").symlink_to(tmp_path / "out.txt")
    (tmp_path / "ds" / "cache").mkdir()
    (tmp_path / "ds" / "cache" / "x.txt").write_text("x")
    root = DataRoot.of_source(tmp_path / "ds", excluded=[tmp_path / "ds" / "cache"])
    assert root.read_text(tmp_path / "ds" / "sub" / "a.txt") == "a"
    assert root.inside(tmp_path / "ds" / "sub" / ".." / "sub" / "a.txt")
    for outside in (tmp_path / "out.txt", tmp_path / "ds" / ".." / "out.txt", tmp_path / "ds" / "link"):
        assert not root.inside(outside) and not root.is_file(outside)
        with pytest.raises(OutsideRoot, match="outside the dataset folder"):
            root.read_bytes(outside)
    with pytest.raises(OutsideRoot):  # under the folder, but in the excluded cache
        root.read_bytes(tmp_path / "ds" / "cache" / "x.txt")
    assert root.glob(tmp_path, "*") == []  # nothing is listed in a folder outside


def test_a_symlink_swapped_between_the_check_and_the_open_is_refused(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "real.txt").write_text("mine")
    (tmp_path / "out.txt").write_text("secret")
    link = tmp_path / "ds" / "link.txt"
    link.symlink_to(tmp_path / "ds" / "real.txt")
    root = DataRoot.of_source(tmp_path / "ds")
    real_open = os.open

    def swap_then_open(path, flags, *args):
        if Path(path) == link:  # after the path was checked, before it is opened
            link.unlink()
            link.symlink_to(tmp_path / "out.txt")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(OutsideRoot):
        root.read_bytes(link)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    (tmp_path / "ds").mkdir()
    os.mkfifo(tmp_path / "ds" / "pipe.jpg")
    with pytest.raises(DataError, match="not a regular file"):
        DataRoot.of_source(tmp_path / "ds").read_bytes(tmp_path / "ds" / "pipe.jpg")


def test_an_annotation_file_source_reads_its_dataset_folder(tmp_path):
    path = coco_file(tmp_path / "ds", [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}])
    assert DataRoot.of_source(path).folder == (tmp_path / "ds").resolve()  # the folder above annotations/
    assert DataRoot.of_source(tmp_path / "ds" / "x.idl").folder == (tmp_path / "ds").resolve()
    # never wider than the root it was admitted under
    assert DataRoot.of_source(path, within=path.parent).folder == path.parent.resolve()


def test_the_source_must_still_be_inside_the_admitted_root_when_opened(tmp_path, two_tenants):
    mine, theirs = two_tenants
    link = tmp_path / "data" / "job-source"
    link.symlink_to(mine)  # what the service admitted
    assert DataRoot.of_source(link, within=tmp_path / "data").folder == mine.resolve()
    outside = tmp_path / "elsewhere"
    image(outside / "x.png")
    link.unlink()
    link.symlink_to(outside)  # swapped after admission
    with pytest.raises(OutsideRoot, match="outside .*the root this job was admitted under"):
        DataRoot.of_source(link, within=tmp_path / "data")


def test_a_local_source_in_the_s3_mirror_cache_is_refused(tmp_path):
    cache = tmp_path / "cache"
    (cache / "s3" / "bucket" / "theirs").mkdir(parents=True)
    with pytest.raises(OutsideRoot, match="S3 mirror cache"):
        DataRoot.of_source(cache / "s3" / "bucket" / "theirs", excluded=[cache])
    (cache / "s3" / "bucket" / "theirs" / "a.json").write_text("{}")
    holder = DataRoot.of_source(tmp_path, excluded=[cache])  # a source that holds the cache: not in it
    with pytest.raises(OutsideRoot):
        holder.read_bytes(cache / "s3" / "bucket" / "theirs" / "a.json")


# --- each reader ----------------------------------------------------------------------------------


def test_coco_file_names_outside_the_dataset_are_refused(two_tenants):
    mine, theirs = two_tenants
    image(mine / "images" / "train" / "ok.png")
    secret = theirs / "images" / "secret.png"
    coco_file(mine, [
        {"id": 1, "file_name": "ok.png", "width": 40, "height": 30},
        {"id": 2, "file_name": str(secret), "width": 64, "height": 48},  # absolute
        {"id": 3, "file_name": "../../../theirs/images/secret.png", "width": 64, "height": 48},
    ])  # fmt: skip
    with pytest.raises(DataError, match="secret.png: is outside the dataset folder"):
        coco.read(mine, "train", BadDataPolicy(), check_images=True)
    policy = BadDataPolicy(skip_bad=True)
    data = coco.read(mine, "train", policy, check_images=True)
    assert [r.image.name for r in data.records] == ["ok.png"] and policy.report.skipped_images == 2
    # Without image checks the records keep the paths, and opening them at training time is refused.
    unchecked = coco.read(mine, "train", BadDataPolicy(), check_images=False)
    with pytest.raises(OutsideRoot):
        ImageDataset(unchecked, 64)[1]


def test_coco_split_outside_the_dataset_is_not_read(two_tenants):
    mine, theirs = two_tenants
    coco_file(mine, [], "instances_val.json")
    for split in (
        str(theirs / "annotations" / "instances_train.json"),
        "../theirs/annotations/instances_train.json",
    ):
        with pytest.raises(DataError, match="no COCO annotation file") as err:
            coco.read(mine, split, BadDataPolicy(), check_images=False)
        assert "secret" not in str(err.value)


def test_yolo_paths_outside_the_dataset_are_refused(two_tenants):
    mine, theirs = two_tenants
    image(mine / "images" / "train" / "ok.png")
    (mine / "labels" / "train").mkdir(parents=True)
    names = "names: [cat]\n"
    for base in (str(theirs), "../theirs"):
        (mine / "data.yaml").write_text(f"path: {base}\ntrain: images\n{names}")
        with pytest.raises(OutsideRoot, match="its 'path'.*outside the dataset folder"):
            yolo.read(mine, "train", BadDataPolicy(), True)
    (mine / "data.yaml").write_text(f"path: .\ntrain: {theirs / 'images'}\n{names}")
    with pytest.raises(OutsideRoot, match="split 'train'.*outside the dataset folder"):
        yolo.read(mine, "train", BadDataPolicy(), True)
    (mine / "list.txt").write_text(f"images/train/ok.png\n{theirs / 'images' / 'secret.png'}\n")
    (mine / "data.yaml").write_text(f"path: .\ntrain: list.txt\n{names}")
    policy = BadDataPolicy(skip_bad=True)
    data = yolo.read(mine, "train", policy, True)
    assert [r.image.name for r in data.records] == ["ok.png"] and policy.report.skipped_images == 1
    (mine / "images" / "train" / "linked.png").symlink_to(theirs / "images" / "secret.png")
    (mine / "data.yaml").write_text(f"path: .\ntrain: images/train\n{names}")
    with pytest.raises(DataError, match="linked.png: resolves to .*secret.png, outside the dataset folder"):
        yolo.read(mine, "train", BadDataPolicy(), True)


def test_voc_ids_and_splits_outside_the_dataset_are_refused(two_tenants):
    mine, theirs = two_tenants
    (theirs / "Annotations").mkdir()
    (theirs / "Annotations" / "secret.xml").write_text("<annotation><size><width>64</width>"
                                                       "<height>48</height></size></annotation>")  # fmt: skip
    (mine / "Annotations").mkdir()
    (mine / "ImageSets" / "Main").mkdir(parents=True)
    (mine / "ImageSets" / "Main" / "train.txt").write_text("../../theirs/Annotations/secret\n")
    with pytest.raises(DataError, match="secret.*outside the dataset folder"):
        voc.read(mine, "train", BadDataPolicy(), check_images=False)
    with pytest.raises(DataError, match="VOC split .* not found"):
        voc.read(mine, "../theirs/train", BadDataPolicy(), check_images=False)


def test_brainwash_image_paths_outside_the_dataset_are_refused(two_tenants):
    mine, theirs = two_tenants
    image(mine / "ok.png")
    secret = theirs / "images" / "secret.png"
    (mine / "train.idl").write_text(f'"ok.png": (1, 1, 9, 9);\n"{secret}": (1, 1, 9, 9);\n'
                                    '"../theirs/images/secret.png": (1, 1, 9, 9).\n')  # fmt: skip
    with pytest.raises(DataError, match="outside the dataset folder"):
        brainwash.read(mine, "train", BadDataPolicy(), True)
    policy = BadDataPolicy(skip_bad=True)
    assert len(brainwash.read(mine, "train", policy, True).records) == 1
    assert policy.report.skipped_images == 2


def test_open_dataset_confines_to_the_allowed_root(tmp_path, two_tenants):
    mine, _ = two_tenants
    image(mine / "images" / "train" / "a.png")
    coco_file(mine, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}])
    data = open_dataset(str(mine), "coco", "train", allowed_root=str(tmp_path / "data"))
    assert data.files.folder == mine.resolve() and len(data.records) == 1
    with pytest.raises(OutsideRoot, match="admitted under"):
        open_dataset(str(mine), "coco", "train", allowed_root=str(tmp_path / "data" / "theirs"))
    with pytest.raises(DataError, match="one is an s3:// URI"):
        open_dataset(str(mine), "coco", "train", allowed_root="s3://bucket/data")


def test_an_s3_dataset_cannot_reach_another_tenants_mirror(s3_bucket, tmp_path):
    """Tenant b's images sit in the local mirror of the bucket (b ran a job earlier); tenant a's
    annotations name them by `..`: refused, although the file is right there in the cache."""
    from trainer.contract.storage import fetch_to_cache, open_storage

    bucket, settings = s3_bucket
    store = open_storage(f"s3://{bucket}", settings)
    image(tmp_path / "secret.png", 64, 48)
    store.write_bytes("b/images/secret.png", (tmp_path / "secret.png").read_bytes())
    fetch_to_cache(f"s3://{bucket}/b", settings)
    images = [{"id": 1, "file_name": "../../b/images/secret.png", "width": 64, "height": 48}]
    coco_file(tmp_path / "a", images)
    store.write_bytes(
        "a/annotations/instances_train.json", (tmp_path / "a/annotations/instances_train.json").read_bytes()
    )
    assert (settings.cache_dir / "s3" / bucket / "b" / "images" / "secret.png").is_file()
    with pytest.raises(DataError, match="secret.png: resolves to .*outside the dataset folder"):
        open_dataset(
            f"s3://{bucket}/a", "coco", "train", storage_settings=settings, allowed_root=f"s3://{bucket}/a"
        )
