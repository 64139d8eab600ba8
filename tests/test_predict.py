"""tools/predict.py (Detectron2 demo.py's flags) on a run folder or a config file: files, folders
and globs in, one picture per image out, any size, grayscale, EXIF orientation; class names
from the run's own DATASETS.USER. Also tools/draw_detections.py on a DATASETS.USER run."""
import os
import re
import sys

import pytest
import torch
from PIL import Image

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import predict  # noqa: E402  (tools/predict.py)

from resnet_backbone import inference, runs  # noqa: E402
from resnet_backbone.data import SHAPE_CLASSES, synthetic_root  # noqa: E402

FRUIT = ["apple", "pear", "plum", "fig", "kiwi"]


def write_run(run, shipped_config, **dataset_keys):
    """A run folder as train_net leaves it (config.yaml, model_final.pth) of the demo config,
    with seeded random weights, whose datasets are the user dataset `dataset_keys`
    (DATASETS.USER.<run name>_val)."""
    from detectron2.config import CfgNode
    from detectron2.modeling import build_model

    cfg = shipped_config("Demo/resnet18_c4_synthetic.yaml")
    cfg.DATASETS.USER[run.name + "_val"] = CfgNode(dataset_keys)
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = (run.name + "_val",)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, run / "model_final.pth")
    (run / "config.yaml").write_text(cfg.dump())
    return run


@pytest.fixture(scope="module")
def fruit_run(tmp_path_factory, shipped_config):
    """Classes named only in the run's DATASETS.USER (a VOC entry; its files are not needed)."""
    run = tmp_path_factory.mktemp("fruit_run")
    return write_run(run, shipped_config, FORMAT="voc", DIRNAME="nowhere", SPLIT="val",
                     CLASSES=FRUIT)


def save(path, size, mode="RGB", orientation=None):
    image = Image.new(mode, size, 128 if mode == "L" else (200, 30, 90))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif)
    return path


def test_predicts_files_folders_and_globs_from_a_run_folder(fruit_run, tmp_path, capsys):
    save(tmp_path / "photos" / "colour.jpg", (90, 60))
    save(tmp_path / "photos" / "gray.png", (200, 50), mode="L")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    rotated = save(tmp_path / "rotated.jpg", (80, 40), orientation=6)  # shown 40 wide, 80 high
    save(tmp_path / "more" / "a.jpeg", (300, 240))
    save(tmp_path / "more" / "b.jpeg", (64, 64))
    out = tmp_path / "out"
    outputs = predict.main([
        "--config-file", str(fruit_run), "--input", str(tmp_path / "photos"), str(rotated),
        str(tmp_path / "more" / "*.jpeg"), "--output", str(out), "--confidence-threshold", "0",
        "--opts", "MODEL.DEVICE", "cpu",
    ])
    names = sorted(p.name for p in out.iterdir())
    assert [os.path.splitext(n)[0] for n in names] == ["a", "b", "colour", "gray", "rotated"]
    # Detectron2's demo keeps the input's name and extension
    assert names == ["a.jpeg", "b.jpeg", "colour.jpg", "gray.png", "rotated.jpg"]
    sizes = {os.path.splitext(p.name)[0]: Image.open(p).size for p in out.iterdir()}
    assert sizes == {"colour": (90, 60), "gray": (200, 50), "rotated": (40, 80),
                     "a": (300, 240), "b": (64, 64)}
    assert Image.open(out / "colour.jpg").format == "JPEG"
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(outputs) == 5
    assert re.match(rf"{re.escape(str(tmp_path / 'photos' / 'colour.jpg'))}: detected \d+ "
                    rf"instances in \d+\.\d\ds.* -> {re.escape(str(out / 'colour.jpg'))}$",
                    printed[0]), printed[0]
    # untrained weights score every class about equally: all five names show up
    assert any(name in "".join(printed) for name in FRUIT)
    assert not any(name in "".join(printed) for name in SHAPE_CLASSES)


def test_a_config_file_with_weights_and_a_single_output_file(fruit_run, tmp_path):
    picture = tmp_path / "picture.png"
    predict.main(["--config-file", str(fruit_run / "config.yaml"),
                  "--input", str(save(tmp_path / "in.png", (50, 70))), "--output", str(picture),
                  "--opts", "MODEL.WEIGHTS", str(fruit_run / "model_final.pth")])
    assert Image.open(picture).size == (50, 70)


def test_the_configs_fast_path_applies_and_predicts_what_the_default_model_does(fruit_run):
    from resnet_backbone.modeling.fast_path import FoldedNormConv2d

    image = torch.randint(0, 256, (70, 50, 3), dtype=torch.uint8).numpy()
    found = {}
    for fold in ("False", "True"):
        cfg = runs.load_model_run(fruit_run, ["MODEL.FAST_PATH.FOLD_FROZEN_BN", fold])
        predictor = inference.make_predictor(cfg)
        folded = [m for m in predictor.model.modules() if isinstance(m, FoldedNormConv2d)]
        assert bool(folded) == (fold == "True")
        found[fold] = predictor(image)["instances"]
    assert len(found["True"]) == len(found["False"]) > 0
    torch.testing.assert_close(found["True"].scores, found["False"].scores, atol=1e-4, rtol=0)


def test_class_names_of_a_coco_user_dataset_come_from_its_json(tmp_path, demo_config,
                                                              datasets_dir):
    config = tmp_path / "coco_user.yaml"
    config.write_text(f"""_BASE_: "{demo_config}"
DATASETS:
  USER:
    my_coco_val: {{FORMAT: coco, IMAGE_ROOT: images,
                  JSON: "{synthetic_root(str(datasets_dir))}/annotations/instances_val.json"}}
  TEST: ("my_coco_val",)
""")
    cfg = runs.load_model_run(str(config))
    assert inference.class_metadata(cfg).thing_classes == list(SHAPE_CLASSES)


def test_bad_inputs_are_named(fruit_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="--input .*missing.jpg: no such file"):
        inference.expand_inputs([str(tmp_path / "missing.jpg")])
    with pytest.raises(FileNotFoundError, match=r"--input .*\*.jpg: no image files there"):
        inference.expand_inputs([str(tmp_path / "*.jpg")])
    with pytest.raises(ValueError, match="would all be written to out/x.jpg"):
        inference.output_paths(["a/x.jpg", "b/x.jpg"], "out")
    assert inference.output_paths(["a/x.jpg", "b/x.png"], "out") == {"a/x.jpg": "out/x.jpg",
                                                                    "b/x.png": "out/x.png"}
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: image is not readable"):
        inference.read_bgr(str(tmp_path / "broken.jpg"))
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.yaml").write_text((fruit_run / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="neither model_final.pth nor last_checkpoint"):
        runs.load_model_run(str(empty))
    (empty / "last_checkpoint").write_text("model_0000099.pth")
    with pytest.raises(FileNotFoundError, match="names .*model_0000099.pth, which does not exist"):
        runs.load_model_run(str(empty))
    cfg = runs.load_model_run(str(fruit_run / "config.yaml"), ["MODEL.WEIGHTS", ""])
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        inference.make_predictor(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_config_on_a_machine_without_cuda_says_what_to_add(fruit_run):
    cfg = runs.load_model_run(str(fruit_run), ["MODEL.DEVICE", "cuda"])
    with pytest.raises(RuntimeError, match="MODEL.DEVICE='cuda' but no CUDA device .* "
                                           "--opts MODEL.DEVICE cpu"):
        inference.make_predictor(cfg)


@pytest.mark.slow
def test_draw_detections_of_a_user_dataset_run(tmp_path, shipped_config, train_net,
                                               datasets_dir):
    """It used to stop with "Dataset '...' is not registered" for DATASETS.USER runs."""
    run = tmp_path / "coco_run"
    run.mkdir()
    root = synthetic_root(str(datasets_dir))
    write_run(run, shipped_config, FORMAT="coco", IMAGE_ROOT=root + "/images",
              JSON=root + "/annotations/instances_val.json")
    completed = train_net(str(run), "--num-images", "1", "--output-dir", str(tmp_path / "pics"),
                          config=None, script=REPO / "tools" / "draw_detections.py")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert len(list((tmp_path / "pics").iterdir())) == 1
