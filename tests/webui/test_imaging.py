"""The UI's pixel conversions and parsing, without a browser: palette snapping, layers, points, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.imageio import ImageReadError, decode_image, heatmap_overlay, heatmap_rgb, read_image
from model.preprocess import to_rgb_array
from webui.app import parse_classes
from webui.client import ApiError
from webui.components.learn import compare_md, curve_rows
from webui.imaging import (
    UNLABELED,
    class_overlay,
    decode_rgb,
    editor_label,
    entropy_view,
    label_to_layer,
    paint_points,
    snap_to_classes,
)

COLORS = [(0, 0, 255), (255, 0, 0), (0, 200, 0)]


def test_antialiased_edges_snap_to_the_nearest_class_and_faint_pixels_stay_unlabeled() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (250, 10, 5, 255)  # nearly red
    rgba[0, 1] = (128, 0, 128, 200)  # red/blue blend, closer to neither exactly: nearest wins (a class, never new)
    rgba[0, 2] = (0, 190, 10, 129)  # green edge at just over half opacity
    rgba[0, 3] = (255, 0, 0, 100)  # faint antialiasing fringe
    label = snap_to_classes(rgba, COLORS)
    assert label[0, 0] == 1 and label[0, 1] in (0, 1) and label[0, 2] == 2 and label[0, 3] == UNLABELED
    assert set(np.unique(label)) <= {0, 1, 2, UNLABELED}


def test_label_round_trips_through_an_editor_layer_and_later_layers_win() -> None:
    label = np.full((5, 6), UNLABELED, np.uint8)
    label[1, 1:4], label[3, 2] = 2, 0
    layer = label_to_layer(label, COLORS)
    assert np.array_equal(editor_label({"layers": [layer]}, (5, 6), COLORS), label)
    over = np.zeros_like(layer)
    over[1, 1] = (255, 0, 0, 255)
    out = editor_label({"layers": [layer, over]}, (5, 6), COLORS)
    assert out[1, 1] == 1 and out[1, 2] == 2


def test_a_scaled_canvas_layer_is_resized_without_inventing_colours() -> None:
    small = label_to_layer(np.array([[0, 1], [UNLABELED, 2]], np.uint8), COLORS)
    out = editor_label({"layers": [small]}, (4, 4), COLORS)
    assert out[0, 0] == 0 and out[0, 3] == 1 and out[3, 0] == UNLABELED and out[3, 3] == 2


def test_points_are_burnt_in_as_disks() -> None:
    out = paint_points(np.full((9, 9), UNLABELED, np.uint8), [{"x": 4, "y": 4, "class_id": 1, "radius": 2}])
    assert out[4, 4] == 1 and out[4, 6] == 1 and out[4, 7] == UNLABELED and (out == 1).sum() == 13


def test_parse_classes() -> None:
    assert parse_classes("background #000000\nleft ventricle #FF0000\n\nmyo") == [
        {"name": "background", "color": "#000000"}, {"name": "left ventricle", "color": "#ff0000"}, {"name": "myo"}]
    with pytest.raises(Exception, match="at least one class"):
        parse_classes("  \n")


def test_api_errors_read_as_sentences() -> None:
    e = ApiError(422, [{"loc": ["body", "classes", 0, "name"], "msg": "invalid name"}], "invalid")
    assert e.message == "classes.0.name: invalid name (HTTP 422)"
    assert ApiError(409, "duplicate", "conflict").message == "duplicate (HTTP 409)"


def test_job_curve_and_comparison() -> None:
    job = {"id": 3, "state": "succeeded", "result_version": 2, "base_version": 1, "params": {"steps": 5},
           "progress": {"step": 5, "loss": {"pce": 0.25}, "metric": {"miou": 0.4}}}
    assert curve_rows(job) == [{"step": 5, "value": 0.25, "series": "loss pce"},
                               {"step": 5, "value": 0.4, "series": "val miou"}]
    models = [{"version": 1, "active": False, "metrics": {"miou": 0.1}},
              {"version": 2, "active": True, "metrics": {"miou": 0.4}}]
    md = compare_md(models, job)
    assert "| miou | 0.1000 | 0.4000 |" in md and "now active" in md
    assert compare_md(models, {**job, "state": "cancelled"}) == ""


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"])
def test_bytes_decode_as_the_model_reads_files(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 4096, (9, 11), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA").convert(mode)
    path = tmp_path / "x.png"
    im.save(path)
    stored = read_image(path)
    assert np.array_equal(decode_image(path.read_bytes()), stored)
    assert np.array_equal(decode_rgb(path.read_bytes()), to_rgb_array(stored))
    with pytest.raises(ImageReadError, match="cannot read image thing.png"):
        decode_image(b"not an image", "thing.png")


def test_heatmap_overlay_is_the_one_blend() -> None:
    rgb = np.full((4, 5, 3), 200, np.uint8)
    heat = np.linspace(0, 1, 20).reshape(4, 5)
    assert np.array_equal(heatmap_overlay(rgb, heat, 0.0), rgb)
    assert np.array_equal(heatmap_overlay(rgb, heat, 1.0), heatmap_rgb(heat))
    probs = np.full((2, 4, 5), 0.5, np.float32)
    view, mean, top = entropy_view(rgb, probs, 0.65)
    assert view.dtype == np.uint8 and np.isclose(mean, np.log(2), atol=1e-5) and np.isclose(top, np.log(2))


def test_class_overlay_blends_shown_classes_only_and_matches_a_float_blend() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    cls = rng.integers(0, 3, (40, 50)).astype(np.uint8)
    cls[:5] = UNLABELED
    for visible in (None, {1}):
        out = class_overlay(rgb, cls, COLORS, 0.45, visible)
        shown = (cls != UNLABELED) & (np.isin(cls, sorted(visible)) if visible else True)
        ref = rgb.astype(np.float32)
        ref[shown] = ref[shown] * 0.55 + np.asarray(COLORS, np.float32)[cls[shown]] * 0.45
        assert np.array_equal(out, ref.astype(np.uint8))
        assert np.array_equal(out[~shown], rgb[~shown]), "unlabelled and hidden classes stay uncovered"
