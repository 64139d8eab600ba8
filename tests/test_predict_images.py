"""tools/predict.py is as careful with images as training: 16-bit and float pixels are refused
with training's message, an unreadable or refused file is skipped while every other image is
predicted, the skipped ones are listed at the end with a non-zero exit, and an image over
--max-pixels is refused from its header without being decoded."""
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from resnet_backbone import inference
from resnet_backbone.data import validation
from test_predict import predict, save, write_run

HIGH_BIT_DEPTH = "pixels (16-bit or float); Detectron2 reads these as 255 everywhere"


@pytest.fixture(scope="module")
def run(tmp_path_factory, shipped_config):
    folder = tmp_path_factory.mktemp("run")
    return write_run(folder, shipped_config, FORMAT="voc", DIRNAME="nowhere", SPLIT="val",
                     CLASSES=["a", "b"])


def sixteen_bit_png(path):
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(path)
    return path


def truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:2000])  # the header is whole, the pixels are not
    return path


@pytest.fixture
def decoded(monkeypatch):
    """The files read_image decoded during the test."""
    paths = []
    read_image = inference.read_image

    def recording(path, *args, **kwargs):
        paths.append(str(path))
        return read_image(path, *args, **kwargs)

    monkeypatch.setattr(inference, "read_image", recording)
    return paths


def test_a_folder_with_bad_files_predicts_every_good_one_and_lists_the_bad(run, tmp_path,
                                                                            decoded, capsys):
    photos = tmp_path / "photos"
    bad = {
        "a_corrupt.jpg": "not a readable image",
        "b_16bit.png": f"image has 'I;16' {HIGH_BIT_DEPTH}",
        "c_float.tif": f"image has 'F' {HIGH_BIT_DEPTH}",
        "d_text.jpg": "image is not readable (UnidentifiedImageError",
        "e_large.png": "image is 120x100 (0.0 megapixels), more than --max-pixels 10000",
    }
    truncated_jpeg(save(photos / "a_corrupt.jpg", (64, 64)))
    sixteen_bit_png(photos / "b_16bit.png")
    Image.new("F", (40, 30)).save(photos / "c_float.tif")
    (photos / "d_text.jpg").write_text("not an image")
    save(photos / "e_large.png", (120, 100))
    for name in ("f_good.jpg", "g_gray.png", "z_last.jpg"):
        save(photos / name, (64, 48), mode="L" if name.endswith(".png") else "RGB")

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        predict.main(["--config-file", str(run), "--input", str(photos), "--output", str(out),
                      "--max-pixels", "10000", "--opts", "MODEL.DEVICE", "cpu"])
    assert exited.value.code not in (0, None)
    assert sorted(p.name for p in out.iterdir()) == ["f_good.jpg", "g_gray.png", "z_last.jpg"]
    listing = str(exited.value.code)
    assert listing.startswith("predict: 5 of 8 images were not predicted")
    for name, reason in bad.items():
        assert f"{photos / name}: {reason}" in listing, name
    assert str(photos / "e_large.png") not in decoded  # refused from its header
    assert "skipped" in capsys.readouterr().err


def test_predict_gives_training_s_message_for_high_bit_depth_images(tmp_path):
    path = sixteen_bit_png(tmp_path / "depth.png")
    with pytest.raises(ValueError) as refused:
        inference.read_bgr(str(path))
    training = validation._image_problem({"file_name": str(path), "image_id": 1})
    assert training.endswith(str(refused.value)[len(str(path)):])
    assert HIGH_BIT_DEPTH in training


def test_an_image_over_the_default_limit_is_refused_without_decoding(tmp_path, decoded):
    path = tmp_path / "huge.png"
    Image.new("1", (8000, 8000)).save(path)  # 64 megapixels (PIL warns from 89) in 10 kB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"huge.png: image is 8000x8000 \(64.0 megapixels"
                                             r"\), more than --max-pixels 50000000"):
            inference.read_bgr(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded == [] and peak < 1 << 20


def test_a_higher_limit_lets_a_large_image_through(tmp_path):
    path = save(tmp_path / "wide.png", (300, 200))
    assert inference.read_bgr(str(path), max_pixels=60000).shape == (200, 300, 3)
    with pytest.raises(ValueError, match="more than --max-pixels 59999"):
        inference.read_bgr(str(path), max_pixels=59999)
