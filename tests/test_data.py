"""DATA readers: .npz, folders of .npy/.npz, image folders with preprocess.json."""

import json

import numpy as np
import pytest
from PIL import Image

import optc
from optc.data import read_data
from optc.errors import OptcError
from tests.util import MODELS


def _write_images(folder, images, classes=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        target = folder if classes is None else folder / f"class_{classes[i]}"
        target.mkdir(exist_ok=True)
        Image.fromarray(img).save(target / f"img_{i:03d}.png")


def test_rgb_images_are_resized_scaled_normalised_and_labelled(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(5)]
    _write_images(tmp_path, images, classes=[1, 0, 1, 2, 0])
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    (tmp_path / "preprocess.json").write_text(json.dumps(
        {"size": [4, 4], "mean": mean, "std": std}))
    data = read_data(tmp_path, ["x"])
    assert data["x"].shape == (5, 3, 4, 4) and data["x"].dtype == np.float32
    # class folders in sorted order: class_0 first, files sorted inside each
    order = [1, 4, 0, 2, 3]
    assert data["labels"].tolist() == [0, 0, 1, 1, 2]
    expected = np.stack([(images[i] / 255.0 - mean) / std for i in order]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(data["x"], expected, rtol=1e-5, atol=1e-5)


def test_grey_nhwc_and_resizing(tmp_path):
    img = np.full((16, 16), 200, np.uint8)
    _write_images(tmp_path, [img, img])
    (tmp_path / "preprocess.json").write_text(json.dumps(
        {"size": [8, 8], "mode": "L", "layout": "NHWC", "scale": 100}))
    data = read_data(tmp_path, ["x"])
    assert data["x"].shape == (2, 8, 8, 1) and "labels" not in data
    np.testing.assert_allclose(data["x"], 2.0)


@pytest.mark.parametrize("spec, fragment", [
    (None, "a folder of images needs a preprocess.json"),
    ({"mean": [0.5]}, 'needs at least "size"'),
    ({"size": [4, 4], "crop": 3}, "unknown key(s) crop"),
    ({"size": [4, 4], "mean": [1, 2]}, "mean and std need 1 or 3 values"),
    ({"size": [4, 4], "layout": "CHW"}, '"layout" NCHW or NHWC'),
])
def test_bad_image_folders(tmp_path, spec, fragment):
    _write_images(tmp_path, [np.zeros((4, 4, 3), np.uint8)])
    if spec is not None:
        (tmp_path / "preprocess.json").write_text(json.dumps(spec))
    with pytest.raises(OptcError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_data(tmp_path, ["x"])


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "preprocess.json").write_text(json.dumps({"size": [4, 4]}))
    with pytest.raises(OptcError, match="broken.png: cannot read it as an image"):
        read_data(tmp_path, ["x"])


def test_digits_images_calibrate_quantize(tmp_path):
    # the digits test set written as 8x8 grey PNGs calibrates the digits model like its .npz
    digits = np.load(MODELS / "digits_test.npz")
    x = digits["input"][:64, 0]
    lo, hi = float(x.min()), float(x.max())
    pixels = np.round((x - lo) / (hi - lo) * 255).astype(np.uint8)
    _write_images(tmp_path, list(pixels))
    # pixel / 255 * (hi - lo) + lo  ==  (pixel / 255 - mean) / std
    (tmp_path / "preprocess.json").write_text(json.dumps(
        {"size": [8, 8], "mode": "L", "mean": [-lo / (hi - lo)], "std": [1 / (hi - lo)]}))
    data = read_data(tmp_path, ["input"])
    np.testing.assert_allclose(data["input"][:, 0], x, atol=(hi - lo) / 255)
    model, report = optc.optimize(MODELS / "digits_cnn.onnx",
                                  passes="default,quantize{probe=false}", calib=tmp_path)
    assert report.records[-1].stats["layers"] == 4
