from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data import DatasetError, load_dataset, load_folder, parse_spec

H, W = 12, 16


def make_folder(root: Path, names=("a", "b", "c")) -> Path:
    """A valid dataset folder: RGB and gray images, sparse labels, masks, clicks, classes and splits."""
    for sub in ("images", "labels", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        if i % 2:
            Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        else:
            Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
        sparse = np.full((H, W), 255, np.uint8)
        sparse[2, 3:8] = 1
        Image.fromarray(sparse).save(root / "labels" / f"{name}.png")
        Image.fromarray(rng.integers(0, 3, (H, W), dtype=np.uint8)).save(root / "masks" / f"{name}.png")
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "cat", "dog"], "colors": [[0, 0, 0]] * 3}))
    (root / "points.json").write_text(json.dumps({"a": [{"x": 4, "y": 5, "cls": 2}, {"x": 3.6, "y": 2.2, "cls": 0}]}))
    (root / "splits" / "train.txt").write_text("a\n# comment\n\nb.png\n")
    return root


def save_label(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_loads_a_valid_folder(tmp_path):
    data = load_folder(make_folder(tmp_path))
    assert data.names == ["a", "b", "c"] and data.classes.names == ["bg", "cat", "dog"]
    a = data[0]
    assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8
    assert a.dense is not None and a.dense.shape == (H, W)
    # clicks drawn over the label PNG (x=3.6 rounds to 4; (y=2, x=4) was class 1 in the PNG)
    assert a.sparse[5, 4] == 2 and a.sparse[2, 4] == 0 and a.sparse[2, 3] == 1
    assert (data[1].sparse != 255).sum() == 5
    gray = data[1].image
    assert (gray[..., 0] == gray[..., 2]).all()
    train = load_folder(tmp_path, "train")
    assert train.names == ["a", "b"] and train.split == "train"


def test_without_classes_json_infers_count_from_every_label(tmp_path):
    root = make_folder(tmp_path)
    (root / "classes.json").unlink()
    data = load_folder(root, "train")
    assert data.classes.names == ["class_0", "class_1", "class_2"]


def test_labels_only_images_without_labels(tmp_path):
    root = make_folder(tmp_path)
    for sub in ("labels", "masks"):
        (root / sub / "c.png").unlink()
    c = load_folder(root)[2]
    assert c.sparse is None and c.dense is None


def test_registry(tmp_path):
    root = make_folder(tmp_path)
    assert len(load_dataset(str(root))) == 3
    assert load_dataset(f"folder:{root}", "train").names == ["a", "b"]
    assert parse_spec("camvid:/x/y") == ("camvid", Path("/x/y"))
    assert parse_spec("C:/data")[0] == "folder"
    with pytest.raises(DatasetError, match="not a dataset kind"):
        load_dataset("nosuch:/x", "train")


@contextmanager
def raises_naming(path: Path, match: str | None = None) -> Iterator[pytest.ExceptionInfo[DatasetError]]:
    """Expect a DatasetError whose path and message name ``path``."""
    with pytest.raises(DatasetError, match=match) as info:
        yield info
    assert info.value.path == path
    assert str(info.value).startswith(str(path))


def test_missing_root_and_images(tmp_path):
    with raises_naming(tmp_path / "nope", "not found"):
        load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with raises_naming(tmp_path / "empty" / "images", "not found"):
        load_folder(tmp_path / "empty")


def test_label_size_mismatch(tmp_path):
    root = make_folder(tmp_path)
    save_label(root / "labels" / "b.png", np.zeros((H + 1, W), np.uint8))
    with raises_naming(root / "labels" / "b.png", "16x13"):
        load_folder(root)


def test_out_of_range_class_in_label_and_mask(tmp_path):
    root = make_folder(tmp_path)
    bad = np.zeros((H, W), np.uint8)
    bad[3, 4] = 7
    save_label(root / "masks" / "a.png", bad)
    with raises_naming(root / "masks" / "a.png", r"\[7\] outside 0..2.*x=4, y=3"):
        load_folder(root)
    save_label(root / "masks" / "a.png", np.zeros((H, W)))
    save_label(root / "labels" / "c.png", np.full((H, W), 3))
    with raises_naming(root / "labels" / "c.png", "outside"):
        load_folder(root)


def test_rgb_label_rejected(tmp_path):
    root = make_folder(tmp_path)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "labels" / "a.png")
    with raises_naming(root / "labels" / "a.png", "single-channel"):
        load_folder(root)


def test_split_names_a_missing_image(tmp_path):
    root = make_folder(tmp_path)
    (root / "splits" / "val.txt").write_text("a\nzebra\n")
    with raises_naming(root / "splits" / "val.txt", "line 2 names 'zebra'"):
        load_folder(root, "val")
    with raises_naming(root / "splits" / "test.txt", "available splits"):
        load_folder(root, "test")


def test_point_outside_image_or_bad_class(tmp_path):
    root = make_folder(tmp_path)
    points = root / "points.json"
    points.write_text(json.dumps({"b": [{"x": W, "y": 0, "cls": 1}]}))
    with raises_naming(points, "outside"):
        load_folder(root)
    points.write_text(json.dumps({"b": [{"x": 0, "y": 0, "cls": 5}]}))
    with raises_naming(points, "class 5"):
        load_folder(root)
    points.write_text(json.dumps({"zebra": []}))
    with raises_naming(points, "no image"):
        load_folder(root)
    points.write_text(json.dumps({"b": [{"x": 0}]}))
    with raises_naming(points, "needs numeric"):
        load_folder(root)


def test_unreadable_image_and_bad_json(tmp_path):
    root = make_folder(tmp_path)
    (root / "images" / "b.png").write_bytes(b"not a png")
    with raises_naming(root / "images" / "b.png", "unreadable image"):
        load_folder(root)
    (root / "images" / "b.png").unlink()
    (root / "classes.json").write_text('{"names": ["a", }')
    with raises_naming(root / "classes.json", "invalid JSON at line 1"):
        load_folder(root)
    (root / "classes.json").write_text('{"names": ["a", "a"]}')
    with raises_naming(root / "classes.json", "unique"):
        load_folder(root)
    (root / "classes.json").write_text('{"names": ["a", "b", "c"]}')
    (root / "points.json").write_text("[1, 2")
    with raises_naming(root / "points.json", "invalid JSON"):
        load_folder(root)
