"""The set-up route (tools/install_detectron2.py) and the detectron2 it provides.

A stock Detectron2 Faster R-CNN (model-zoo config, shrunk) trains through DefaultTrainer on the
CPU, writes a checkpoint, resumes from it and is evaluated by COCOEvaluator with pycocotools;
launch() runs two CPU processes over gloo; the compiled-op stand-in raises a clear error.
CPU only, no network.
"""
import datetime
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "tools" / "install_detectron2.py"
C4_CONFIG = "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"


def _installer():
    spec = importlib.util.spec_from_file_location("install_detectron2", INSTALLER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _adapted_c():
    """detectron2._C if it is the installer's stand-in, else None (e.g. a real source build)."""
    pytest.importorskip("detectron2")
    from detectron2 import _C

    return _C if getattr(_C, "__adapted_by__", None) else None


# ---------------------------------------------------------------------------------------------
# The installer itself
# ---------------------------------------------------------------------------------------------
ORIGINAL = {"setup.py": "setup(\n    name='x',\n)\n",
            "detectron2/a.py": "import numpy as np\nx = np.int\ny = np.int64\n"}


def _tree(root):
    """A small source tree with the files of ORIGINAL."""
    for rel, text in ORIGINAL.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _diff(old, new):
    """A -p1 unified diff from `old` to `new` ({path: text}), as git diff writes it."""
    import difflib

    return "".join(
        f"diff --git a/{rel} b/{rel}\n" + "".join(difflib.unified_diff(
            old[rel].splitlines(True), new[rel].splitlines(True), f"a/{rel}", f"b/{rel}"))
        for rel in sorted(old) if old[rel] != new[rel])


def _contents(root):
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(params=["git", "patch"])
def patch_tool(request, monkeypatch):
    """The installer, run once with git apply and once with GNU patch (as where git is missing)."""
    import shutil

    if not shutil.which(request.param):
        pytest.skip(f"{request.param} is not installed")
    which = shutil.which
    hidden = {"git"} if request.param == "patch" else set()
    inst = _installer()
    # inst.shutil is the shutil module; monkeypatch restores it after the test.
    monkeypatch.setattr(inst.shutil, "which",
                        lambda name, *a, **k: None if name in hidden else which(name, *a, **k))
    return inst


def test_patch_applies_exactly_and_the_stand_in_is_copied(tmp_path, patch_tool, monkeypatch):
    inst = patch_tool
    new = dict(ORIGINAL, **{"detectron2/a.py": "import numpy as np\nx = int\ny = np.int64\n"})
    patch = tmp_path / "adaptation.patch"
    patch.write_text("Text above the first diff is ignored.\n\n" + _diff(ORIGINAL, new))
    monkeypatch.setattr(inst, "PATCH_FILE", patch)
    tree = _tree(tmp_path / "tree")
    inst.adapt(tree)
    standin = (tree / "detectron2" / "_C.py").read_text()
    assert standin.startswith(inst.STANDIN.read_text())
    assert standin.endswith(f"__adapted_by__ = {inst.fingerprint()!r}\n")
    contents = _contents(tree)
    del contents["detectron2/_C.py"]
    assert contents == new

    # Applied a second time (or to an archive that already has the change): an error, not a
    # silent no-op or a reversal.
    (tree / "detectron2" / "_C.py").unlink()
    with pytest.raises(inst.SetupError, match="detectron2/a.py"):
        inst.apply_patch(tree, patch)
    assert _contents(tree) == new


def test_a_patch_that_does_not_apply_stops_and_changes_nothing(tmp_path, patch_tool):
    """The first file's hunk would apply, the second's does not: the error names the file and
    the hunk, and neither file is touched."""
    inst = patch_tool
    new = {"setup.py": "setup(\n    name='y',\n)\n",
           "detectron2/a.py": "import numpy as np\nx = int\ny = np.int64\n"}
    patch = tmp_path / "adaptation.patch"
    patch.write_text(_diff(ORIGINAL, new))
    tree = _tree(tmp_path / "tree")
    (tree / "setup.py").write_text("setup(\n    name='z',\n)\n")  # a.py is as the patch expects
    before = _contents(tree)
    with pytest.raises(inst.SetupError) as error:
        inst.apply_patch(tree, patch)
    message = str(error.value)
    assert str(patch) in message and "Nothing was changed" in message
    assert inst.ARCHIVE_REQ in message
    if "git apply says" in message:
        assert "patch failed: setup.py:1" in message
    else:
        assert "checking file setup.py\nHunk #1 FAILED at 1" in message
    assert _contents(tree) == before  # no file patched, no .orig or .rej left behind


def test_without_git_or_patch_the_error_says_what_to_install(tmp_path, monkeypatch):
    inst = _installer()
    monkeypatch.setattr(inst.shutil, "which", lambda name, *a, **k: None)
    tree = _tree(tmp_path / "tree")
    with pytest.raises(inst.SetupError, match=r"needs git or GNU patch.*install one"):
        inst.apply_patch(tree, inst.PATCH_FILE)
    assert _contents(tree) == ORIGINAL


def test_an_archive_with_its_own_compiled_module_is_not_shadowed(tmp_path):
    inst = _installer()
    tree = _tree(tmp_path / "tree")
    (tree / "detectron2" / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    with pytest.raises(inst.SetupError, match="already has a detectron2/_C module"):
        inst.adapt(tree)
    assert not (tree / "detectron2" / "_C.py").exists()


def test_fingerprint_and_stamp_follow_the_patch_and_the_stand_in(tmp_path, monkeypatch):
    """Editing either file changes the fingerprint (re-install) and the stamp key (make setup)."""
    inst = _installer()
    assert {inst.PATCH_FILE, inst.STANDIN} <= set(inst.stamp_inputs())
    before = inst.fingerprint()
    for name in ("PATCH_FILE", "STANDIN"):
        edited = tmp_path / name
        edited.write_bytes(getattr(inst, name).read_bytes() + b"\n")
        with monkeypatch.context() as m:
            m.setattr(inst, name, edited)
            assert inst.fingerprint() != before
    assert inst.fingerprint() == before


def test_the_stand_in_module_imports_and_its_ops_raise_a_clear_error():
    """tools/pb1-detectron2-0.6/_C.py as it is in the repository, imported on its own."""
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('standin', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "assert m.has_cuda() is False and 'not built' in m.get_cuda_version()\n"
        "assert not hasattr(m, '__adapted_by__')  # the installer adds it to the installed copy\n"
        "for op in (m.deform_conv_forward, m.nms_rotated, m.some_future_op):\n"
        "    try:\n"
        "        op(1, 2)\n"
        "    except RuntimeError as e:\n"
        "        print(repr(e))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(_installer().STANDIN)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    deform, rotated, future = result.stdout.splitlines()
    assert "deform_conv_forward is not available" in deform
    assert "deformable convolution" in deform and "pip install --no-build-isolation" in deform
    assert "nms_rotated" in rotated and "rotated boxes" in rotated
    assert "some_future_op" in future and "compiled ops" in future


# Checked in the adapted archive, over every .py file that gets installed (detectron2/ and the
# projects its setup.py installs as detectron2.projects.*): none of these may remain.
REMOVED_APIS = [
    (r"\bnp\.(bool|int|float|str)\b", "a numpy alias removed in numpy 1.24"),
    (r"pkg_resources", "pkg_resources, removed in setuptools 81"),
    (r"Image\.LINEAR\b", "PIL.Image.LINEAR, removed in Pillow 10"),
    (r"Image\.ANTIALIAS\b", "PIL.Image.ANTIALIAS, removed in Pillow 10"),
    (r"torch\._six\b", "torch._six, removed in torch 2.0"),
]


@pytest.fixture(scope="module")
def patched_archive(tmp_path_factory):
    """The real pb1-detectron2 archive, extracted and adapted (not installed)."""
    inst = _installer()
    archive = inst.WORK_DIR / inst.ARCHIVE_NAME
    if not archive.is_file():
        pytest.skip(f"{archive} not fetched (the set-up kept an existing detectron2)")
    assert inst._sha256(archive) == inst.ARCHIVE_SHA256
    tmp_path = tmp_path_factory.mktemp("archive")
    with tarfile.open(archive) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp_path, filter="data")
        else:
            tf.extractall(tmp_path)
    tree = tmp_path / inst.ARCHIVE_TOP
    inst.adapt(tree)
    return tree


@pytest.mark.install
def test_patches_apply_to_the_real_archive(patched_archive):
    inst = _installer()
    standin = (patched_archive / "detectron2" / "_C.py").read_text()
    assert standin.startswith(inst.STANDIN.read_text())
    assert standin.endswith(f"__adapted_by__ = {inst.fingerprint()!r}\n")
    compile(standin, "_C.py", "exec")
    compile((patched_archive / "setup.py").read_text(), "setup.py", "exec")
    assert not list(patched_archive.rglob("*.orig")) and not list(patched_archive.rglob("*.rej"))
    files = sorted([*(patched_archive / "detectron2").rglob("*.py"),
                    *(patched_archive / "projects").rglob("*.py")])
    assert len(files) > 100
    for pattern, what in REMOVED_APIS:
        for f in files:
            assert not re.search(pattern, f.read_text(encoding="utf-8")), (
                f"{f.relative_to(patched_archive)} still uses {what}: extend {inst.PATCH_FILE}")


@pytest.mark.install
def test_patched_archive_imports_export_and_analysis_without_caffe2(patched_archive):
    """torch ships no caffe2; v0.6's detectron2.export imported it at module level."""
    code = ("import caffe2\n" if importlib.util.find_spec("caffe2") else "") + (
        "import detectron2, detectron2.export, detectron2.utils.analysis\n"
        "print(detectron2.__file__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=patched_archive,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(patched_archive)


def _fake_detectron2(site, model_zoo_source):
    """A detectron2 package under `site` that the installer's probe imports (no _C adaptation
    marker, as in a source build), with `model_zoo_source` as detectron2/model_zoo/model_zoo.py."""
    modules = ["__init__", "_C", "layers", "modeling", "data", "engine", "evaluation",
               "checkpoint", "utils/__init__", "utils/collect_env"]
    for module in modules:
        (site / "detectron2" / f"{module}.py").parent.mkdir(parents=True, exist_ok=True)
        (site / "detectron2" / f"{module}.py").write_text("")
    (site / "detectron2" / "config.py").write_text(
        "class _Cfg:\n    def merge_from_file(self, path):\n        pass\n"
        "def get_cfg():\n    return _Cfg()\n")
    (site / "detectron2" / "model_zoo").mkdir()
    (site / "detectron2" / "model_zoo" / "__init__.py").write_text("from .model_zoo import *\n")
    (site / "detectron2" / "model_zoo" / "model_zoo.py").write_text(model_zoo_source)
    return site / "detectron2"


def test_source_build_without_pkg_resources_gets_the_setuptools_fix(tmp_path, monkeypatch):
    """Upstream main's model_zoo.py imports pkg_resources, which setuptools>=81 removed: the
    installer names the file and the fix instead of a bare traceback."""
    fake = tmp_path / "site"
    _fake_detectron2(fake, "import pkg_resources\n")
    # setuptools>=81 (no pkg_resources), whatever this environment has
    (fake / "sitecustomize.py").write_text("import sys\nsys.modules['pkg_resources'] = None\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    inst = _installer()
    with pytest.raises(inst.SetupError) as error:
        inst.ensure_detectron2(Path(sys.executable))
    message = str(error.value)
    assert str(fake / "detectron2" / "model_zoo" / "model_zoo.py") in message
    assert "setuptools 81" in message and 'pip install "setuptools<81"' in message


def test_a_working_detectron2_of_the_user_is_left_alone(tmp_path, monkeypatch, capsys):
    """A source build (no stand-in _C) that imports and reads a model-zoo config is kept."""
    package = _fake_detectron2(tmp_path / "site", "def get_config_file(path):\n    return path\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    inst = _installer()

    def must_not_install(python):
        raise AssertionError("the installer replaced a working detectron2")

    monkeypatch.setattr(inst, "install_adapted_detectron2", must_not_install)
    inst.ensure_detectron2(Path(sys.executable))
    assert f"at {package} works and is not ours: leaving it untouched" in capsys.readouterr().out


def test_installed_adaptation_is_current():
    _C = _adapted_c()
    if _C is None:
        pytest.skip("detectron2 is not the installer's adapted build")
    assert _C.__adapted_by__ == _installer().fingerprint()


# ---------------------------------------------------------------------------------------------
# The detectron2 in this environment
# ---------------------------------------------------------------------------------------------
def test_model_zoo_configs_and_collect_env():
    pytest.importorskip("detectron2")
    import detectron2.export  # noqa: F401  (v0.6 imported caffe2 here)
    import detectron2.utils.analysis  # noqa: F401
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.utils.collect_env import collect_env_info

    path = model_zoo.get_config_file(C4_CONFIG)
    assert os.path.isfile(path)
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"
    assert "detectron2" in collect_env_info()


def test_compiled_ops_raise_a_clear_error():
    _C = _adapted_c()
    if _C is None:
        pytest.skip("detectron2 has its compiled ops")
    import torch
    from detectron2.layers import nms_rotated
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    assert _C.has_cuda() is False
    assert "not built" in _C.get_compiler_version()
    boxes = RotatedBoxes(torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]]))
    with pytest.raises(RuntimeError, match=r"box_iou_rotated.*rotated boxes.*build detectron2"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(RuntimeError, match=r"nms_rotated.*rotated boxes"):
        nms_rotated(boxes.tensor, torch.ones(1), 0.5)
    with pytest.raises(RuntimeError, match=r"deform_conv_forward.*deformable convolution"):
        _C.deform_conv_forward()
    with pytest.raises(RuntimeError, match=r"use_fast_impl=False"):
        _C.COCOevalEvaluateImages()
    with pytest.raises(RuntimeError, match=r"some_future_op.*compiled ops"):
        _C.some_future_op()
    with pytest.raises(AttributeError):
        _C.__wrapped__  # dunder lookups stay ordinary misses (inspect, pickle, doctest)


def test_collect_env_on_a_cuda_machine_skips_the_stand_in(monkeypatch):
    """With CUDA, collect_env runs cuobjdump on _C.__file__ unless _C.has_cuda() is false."""
    if _adapted_c() is None:
        pytest.skip("detectron2 has its compiled ops")
    import torch
    from detectron2.utils.collect_env import collect_env_info

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    info = collect_env_info()
    assert "detectron2 arch flags" not in info
    assert "not built" in info


def _all_reduce_worker(out_dir):
    import torch
    import torch.distributed as dist
    from detectron2.utils import comm

    t = torch.tensor([float(comm.get_rank() + 1)])
    dist.all_reduce(t)
    gathered = comm.all_gather(comm.get_rank())
    comm.synchronize()
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"sum": t.item(), "backend": dist.get_backend(), "gathered": gathered,
                   "local_rank": comm.get_local_rank(), "world": comm.get_world_size()}, f)
    # A gloo group alive at interpreter exit can abort the worker (SIGABRT) after it succeeded.
    dist.destroy_process_group()


@pytest.mark.distributed
def test_launch_runs_two_cpu_processes_with_gloo(tmp_path, monkeypatch):
    pytest.importorskip("detectron2")
    from detectron2.engine import launch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the spawned workers see no GPU
    launch(_all_reduce_worker, 2, dist_url="auto", args=(str(tmp_path),),
           timeout=datetime.timedelta(seconds=120))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, res in enumerate(results):
        assert res == {"sum": 3.0, "backend": "gloo", "gathered": [0, 1], "local_rank": r,
                       "world": 2}


# ---------------------------------------------------------------------------------------------
# A tiny stock Faster R-CNN: train 2 iterations, checkpoint, resume, evaluate
# ---------------------------------------------------------------------------------------------
def _register_tiny_dataset(name, image_dir):
    """Two random 80x96 images with two boxes each, registered in memory, in COCO-like dicts."""
    from PIL import Image

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(0)
    dicts = []
    for i in range(2):
        img = rng.integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
        img[10:50, 20:60] = (200, 40, 40)
        file_name = os.path.join(image_dir, f"{name}_{i}.png")
        Image.fromarray(img).save(file_name)
        dicts.append({
            "file_name": file_name, "image_id": i, "height": 80, "width": 96,
            "annotations": [
                {"bbox": [20, 10, 60, 50], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                 "iscrowd": 0},
                {"bbox": [5, 55, 40, 75], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1,
                 "iscrowd": 0},
            ],
        })
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["red", "other"])


def _tiny_cfg(dataset, output_dir, max_iter):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(C4_CONFIG))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu",
        "MODEL.WEIGHTS", "",  # random init: no download
        # Inputs of unit scale keep the randomly initialised, unnormalised (FrozenBN) R-50
        # finite; with the default std of 1 its outputs blow up and it predicts no box.
        "MODEL.PIXEL_STD", [57.375, 57.120, 58.395],
        # The stock R-50-C4 layout at a quarter of its width (1/16 of the weights): fast, and
        # its checkpoints stay small.
        "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.RESNETS.WIDTH_PER_GROUP", 16,
        "MODEL.ROI_HEADS.NUM_CLASSES", 2,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,  # a random model still yields detections
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
        "MODEL.RPN.PRE_NMS_TOPK_TEST", 200, "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
        "DATASETS.TRAIN", (dataset,), "DATASETS.TEST", (dataset,),
        "DATALOADER.NUM_WORKERS", 0,
        "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 96,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96,
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.BASE_LR", 0.001, "SOLVER.MAX_ITER", max_iter,
        "SOLVER.STEPS", (1,), "SOLVER.WARMUP_ITERS", 1, "SOLVER.CHECKPOINT_PERIOD", 100,
        "TEST.EVAL_PERIOD", 0, "TEST.DETECTIONS_PER_IMAGE", 20,
        "OUTPUT_DIR", str(output_dir),
    ])
    return cfg


@pytest.mark.slow
def test_faster_rcnn_trains_resumes_and_evaluates_on_cpu(tmp_path):
    pytest.importorskip("detectron2")
    import torch

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import build_detection_test_loader
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset

    torch.manual_seed(0)
    _register_tiny_dataset("rb_tiny", str(tmp_path))

    # Train 2 iterations; PeriodicCheckpointer writes model_final.pth at the end.
    cfg = _tiny_cfg("rb_tiny", tmp_path / "out", max_iter=2)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == 2  # the loop leaves iter one past the last iteration (1)
    final = tmp_path / "out" / "model_final.pth"
    assert final.is_file()
    assert (tmp_path / "out" / "last_checkpoint").read_text().strip() == "model_final.pth"

    # The checkpoint it wrote loads back with torch>=2.6's weights_only default, with the
    # optimizer, scheduler and iteration it saved.
    ckpt = DetectionCheckpointer(trainer.model).load(str(final))
    assert ckpt["iteration"] == 1
    assert ckpt["trainer"]["_trainer"]["optimizer"]["state"]
    assert ckpt["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 2

    # Resume: a new trainer picks up the last checkpoint and runs the remaining iteration.
    cfg3 = _tiny_cfg("rb_tiny", tmp_path / "out", max_iter=3)
    resumed = DefaultTrainer(cfg3)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    assert resumed.optimizer.state_dict()["state"], "optimizer state was not restored"
    w = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(resumed.model.state_dict()[w], trainer.model.state_dict()[w])
    resumed.train()
    assert resumed.iter == 3

    # Evaluate with pycocotools (the C++ evaluator is a compiled op).
    evaluator = COCOEvaluator("rb_tiny", output_dir=str(tmp_path / "eval"), use_fast_impl=False)
    loader = build_detection_test_loader(cfg3, "rb_tiny")
    results = inference_on_dataset(resumed.model, loader, evaluator)
    ap = results["bbox"]["AP"]
    assert np.isfinite(ap) and 0.0 <= ap <= 100.0, results
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "AP-red", "AP-other"}


def _ddp_train_worker(image_dir, output_dir):
    import torch

    from detectron2.engine import DefaultTrainer

    torch.manual_seed(0)
    _register_tiny_dataset("rb_tiny_ddp", image_dir)
    cfg = _tiny_cfg("rb_tiny_ddp", output_dir, max_iter=2)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()


@pytest.mark.slow
@pytest.mark.distributed
def test_default_trainer_runs_two_cpu_processes(tmp_path, monkeypatch):
    pytest.importorskip("detectron2")
    _C = _adapted_c()
    if _C is None:
        pytest.skip("multi-process CPU training through DefaultTrainer needs the adapted "
                    "create_ddp_model (upstream passes device_ids to DDP for any model)")
    from detectron2.engine import launch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    launch(_ddp_train_worker, 2, dist_url="auto", args=(str(tmp_path), str(tmp_path / "out")),
           timeout=datetime.timedelta(seconds=300))
    assert (tmp_path / "out" / "model_final.pth").is_file()
