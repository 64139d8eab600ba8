#!/usr/bin/env python3
"""Set up a Python environment for resnet_backbone: torch, detectron2 and the rest.

    python3 tools/install_detectron2.py --venv .venv         # create .venv if needed, fill it
    python3 tools/install_detectron2.py --python /path/to/python   # use an existing environment

`make setup`, `make test` and `make demo` run this first. In order, it:

1. returns at once if a stamp file says this environment was already set up from the same
   requirement files, installer and setup.py (``--force`` ignores the stamp);
2. installs requirements/torch.txt if the environment has no torch (an existing torch is kept),
   then requirements/base.txt and OpenCV (opencv-python where libGL.so.1 loads, else
   opencv-python-headless);
3. keeps a detectron2 that already works (a source build of upstream main with compiled ops,
   say) untouched; otherwise fetches upstream v0.6 as the PyPI source archive
   ``pb1-detectron2==0.6`` with the user's own pip configuration, checks its sha256, extracts
   it under build/install_detectron2/, adapts it with the PATCHES below and a pure-Python
   stand-in for ``detectron2._C``, and ``pip install``s the adapted tree;
4. installs this repository in editable mode (``pip install -e . --no-deps``);
5. writes the stamp.

Why the adaptation: PyPI has no installable detectron2. ``pb1-detectron2`` 0.6 is upstream v0.6's
source without its C++/CUDA sources (``detectron2/layers/csrc``), so a plain ``pip install``
fails while compiling, and v0.6's Python code predates torch 2.x, numpy 2, Pillow 10 and
setuptools 81. Faster R-CNN with axis-aligned boxes needs none of the compiled ops (torchvision
provides RoIAlign and NMS on CPU and CUDA) and COCO evaluation can use pycocotools, so the
adapted v0.6 trains and evaluates that model. Ops that do need the compiled code (rotated boxes,
deformable convolution, the C++ COCO evaluator) raise a RuntimeError that says so.

Every patch is an exact text replacement with an expected number of occurrences; a mismatch
stops the install and names the file and the text, so a changed archive is noticed rather than
half-patched. None of Detectron2's code lives in this repository.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
WORK_DIR = REPO / "build" / "install_detectron2"

ARCHIVE_REQ = "pb1-detectron2==0.6"
ARCHIVE_NAME = "pb1-detectron2-0.6.tar.gz"
ARCHIVE_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
ARCHIVE_TOP = "pb1-detectron2-0.6"  # the folder the archive unpacks to
ARCHIVE_DIST = "pb1-detectron2"  # the distribution name it installs under

# The model-zoo config the health check loads (and the tests train).
PROBE_CONFIG = "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"

STAMP_PREFIX = ".resnet_backbone-setup-"


class SetupError(RuntimeError):
    """A set-up step failed; the message says which and what to do."""


def log(msg):
    print(f"[setup] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# The adaptation of pb1-detectron2 0.6. Each entry: (file in the archive, old text, new text,
# expected number of occurrences, one-line reason). Old text is an exact substring, except
# entries whose old text starts with "re:", which are regular expressions.
# --------------------------------------------------------------------------------------------
_NP_ALIAS = r"re:\bnp\.(bool|int|float|str)\b"

PATCHES = [
    # -- setup.py ------------------------------------------------------------------------------
    (
        "setup.py",
        "    ext_modules=get_extensions(),\n"
        '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n',
        "",
        1,
        "the archive has no detectron2/layers/csrc, so there is no extension to build; "
        "detectron2/_C.py (written below) stands in for it",
    ),
    (
        "setup.py",
        '        "future",  # used by caffe2\n        "pydot",  # used to save caffe2 SVGs\n',
        "",
        1,
        "no detectron2 module imports future or pydot (they served the Caffe2 exporter)",
    ),
    (
        "setup.py",
        '        "black==21.4b2",\n',
        "",
        1,
        "black only formats LazyConfig.to_py output (Python-syntax configs); the yacs configs "
        "used here never need it, and a 2021 pin has no place in a run-time environment",
    ),
    (
        "setup.py",
        '    package_data={"detectron2.model_zoo": get_model_zoo_configs()},\n',
        '    package_data={"detectron2.model_zoo": [\n'
        "        path.relpath(p, path.join(path.dirname(path.abspath(__file__)), "
        '"detectron2", "model_zoo"))\n'
        "        for p in glob.glob(path.join(path.dirname(path.abspath(__file__)), "
        '"detectron2", "model_zoo", "configs", "**", "*.*"), recursive=True)\n'
        "    ]},\n",
        1,
        "get_model_zoo_configs() globs a top-level configs/ that the archive lacks (its configs "
        "already sit in detectron2/model_zoo/configs), so no model-zoo YAML was installed",
    ),
    # -- Pillow 10 removed Image.LINEAR --------------------------------------------------------
    (
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
        1,
        "Pillow 10 removed Image.LINEAR (an alias of BILINEAR); its use as a default argument "
        "broke `import detectron2.data`",
    ),
    # -- setuptools 81 removed pkg_resources ---------------------------------------------------
    (
        "detectron2/model_zoo/model_zoo.py",
        "import pkg_resources\n",
        "",
        1,
        "setuptools 81 removed pkg_resources; `import detectron2.model_zoo` failed",
    ),
    (
        "detectron2/model_zoo/model_zoo.py",
        "    cfg_file = pkg_resources.resource_filename(\n"
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        "    )\n",
        "    cfg_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "
        '"configs", config_path)\n',
        1,
        "get_config_file(): the configs are package data next to this module",
    ),
    # -- torch 2.x ships no caffe2 -------------------------------------------------------------
    (
        "detectron2/export/__init__.py",
        "from .api import *\n",
        "try:  # the Caffe2 exporter (export/api.py) imports caffe2 at module level\n"
        "    import caffe2.proto  # noqa: F401\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    from .api import *\n",
        1,
        "torch no longer ships caffe2, so `import detectron2.export` (and "
        "detectron2.utils.analysis, which imports TracingAdapter from it) failed; without "
        "caffe2 the Caffe2 exporter (Caffe2Tracer, Caffe2Model, add_export_config) is left out, "
        "as upstream does after v0.6",
    ),
    # -- multi-process training on CPU -----------------------------------------------------------
    (
        "detectron2/engine/launch.py",
        '    assert torch.cuda.is_available(), "cuda is not available. Please check your '
        'installation."\n'
        "    global_rank = machine_rank * num_gpus_per_machine + local_rank\n"
        "    try:\n"
        "        dist.init_process_group(\n"
        '            backend="NCCL",\n',
        "    has_gpu = torch.cuda.is_available()\n"
        "    if has_gpu:\n"
        "        assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "    global_rank = machine_rank * num_gpus_per_machine + local_rank\n"
        "    try:\n"
        "        dist.init_process_group(\n"
        '            backend="NCCL" if has_gpu else "GLOO",\n',
        1,
        "launch() asserted CUDA for >1 process; without CUDA use gloo (as upstream main does)",
    ),
    (
        "detectron2/engine/launch.py",
        "    assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "    torch.cuda.set_device(local_rank)\n",
        "    if has_gpu:\n        torch.cuda.set_device(local_rank)\n",
        1,
        "launch(): set a CUDA device per process only when there is CUDA",
    ),
    (
        "detectron2/engine/defaults.py",
        '    if "device_ids" not in kwargs:\n'
        '        kwargs["device_ids"] = [comm.get_local_rank()]\n',
        '    if "device_ids" not in kwargs and any(p.is_cuda for p in model.parameters()):\n'
        '        kwargs["device_ids"] = [comm.get_local_rank()]\n',
        1,
        "create_ddp_model(): DistributedDataParallel rejects device_ids for a CPU model, which "
        "broke DefaultTrainer with more than one CPU process",
    ),
    (
        "detectron2/engine/defaults.py",
        "    def run_step(self):\n"
        "        self._trainer.iter = self.iter\n"
        "        self._trainer.run_step()\n",
        "    def run_step(self):\n"
        "        self._trainer.iter = self.iter\n"
        "        self._trainer.run_step()\n"
        "\n"
        "    def state_dict(self):\n"
        "        ret = super().state_dict()\n"
        '        ret["_trainer"] = self._trainer.state_dict()\n'
        "        return ret\n"
        "\n"
        "    def load_state_dict(self, state_dict):\n"
        "        super().load_state_dict(state_dict)\n"
        '        if "_trainer" in state_dict:  # absent from checkpoints of unpatched v0.6\n'
        '            self._trainer.load_state_dict(state_dict["_trainer"])\n',
        1,
        "DefaultTrainer checkpoints left out the optimizer state, so --resume restarted SGD "
        "momentum from zero; save and restore it as upstream did after v0.6",
    ),
    # -- numpy 1.24 removed np.bool/np.int/np.float/np.str (they were the builtins) ------------
    # Same semantics: the aliases were the Python builtins. The pascal_voc_evaluation count
    # includes a commented-out line.
    ("detectron2/evaluation/pascal_voc_evaluation.py", _NP_ALIAS, r"\1", 2,
     "numpy>=1.24 has no np.bool: VOC evaluation failed"),
    ("detectron2/data/datasets/pascal_voc.py", _NP_ALIAS, r"\1", 1,
     "numpy>=1.24 has no np.str: loading a VOC split failed"),
    ("detectron2/data/build.py", _NP_ALIAS, r"\1", 2,
     "numpy>=1.24 has no np.int: the class histogram DefaultTrainer logs failed"),
    ("detectron2/evaluation/sem_seg_evaluation.py", _NP_ALIAS, r"\1", 7,
     "numpy>=1.24 has no np.int/np.float: semantic-segmentation evaluation failed"),
    ("detectron2/structures/masks.py", _NP_ALIAS, r"\1", 3,
     "numpy>=1.24 has no np.bool: mask structures failed"),
    ("detectron2/utils/visualizer.py", _NP_ALIAS, r"\1", 3,
     "numpy>=1.24 has no np.bool: drawing panoptic segmentation failed"),
    ("detectron2/utils/video_visualizer.py", _NP_ALIAS, r"\1", 1,
     "numpy>=1.24 has no np.bool: the video visualizer failed"),
]

# Checked after patching, over every .py file that gets installed (detectron2/ and the projects
# setup.py installs as detectron2.projects.*): none of these may remain.
FORBIDDEN_AFTER_PATCHING = [
    (_NP_ALIAS, "a numpy alias removed in numpy 1.24"),
    ("pkg_resources", "pkg_resources, removed in setuptools 81"),
    ("Image.LINEAR", "PIL.Image.LINEAR, removed in Pillow 10"),
    ("Image.ANTIALIAS", "PIL.Image.ANTIALIAS, removed in Pillow 10"),
    ("torch._six", "torch._six, removed in torch 2.0"),
]

# Reviewed and left alone (torch 2.14, numpy 2.4, Pillow 13, Python 3.11):
# - torch.load's weights_only=True default (torch>=2.6) in fvcore's Checkpointer: the
#   checkpoints DefaultTrainer writes hold only tensors, dicts, lists, numbers and strings
#   (LRMultiplier.state_dict keeps base_lrs/last_epoch only), so resuming works; the test
#   resumes one. Caffe2/Detectron .pkl weights are read with pickle, not torch.load.
# - torch.meshgrid without indexing= (anchor generator), torch.cuda.amp.*, TypedStorage in
#   comm._serialize_to_tensor: warnings only.
# - Image.fromarray(..., mode="L"/format) still works in Pillow 13.

# The stand-in for the compiled extension. @FINGERPRINT@ is filled in with fingerprint().
C_STANDIN = '''\
# Written by resnet_backbone's tools/install_detectron2.py; not part of upstream detectron2.
"""Pure-Python stand-in for detectron2's compiled extension ``detectron2._C``.

This detectron2 is upstream v0.6 installed from the PyPI source archive pb1-detectron2==0.6,
which ships no C++/CUDA sources, so it has no compiled ops. Faster R-CNN with axis-aligned boxes
needs none of them: torchvision provides RoIAlign and NMS on CPU and CUDA, and COCOEvaluator
evaluates with pycocotools when given use_fast_impl=False. Everything else here raises a
RuntimeError naming the op, what needs it and how to get a full build. Nothing fails at import.
"""

__adapted_by__ = "@FINGERPRINT@"

_NOT_BUILT = (
    "not built: detectron2 installed by resnet_backbone's tools/install_detectron2.py "
    "from pb1-detectron2==0.6, without compiled ops"
)

_FULL_BUILD = (
    "For the compiled ops, build detectron2 from source with a C++ compiler (and CUDA for the "
    "GPU kernels) in this environment: pip uninstall -y pb1-detectron2 && "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
    "(see https://detectron2.readthedocs.io/en/latest/tutorials/install.html); "
    "tools/install_detectron2.py leaves such a build untouched."
)

_ROTATED = (
    "rotated boxes (RotatedBoxes.pairwise_iou, rotated NMS, ROIAlignRotated: RRPN and "
    "RROIHeads)",
    "",
)
_DEFORM = (
    "deformable convolution (DeformConv, ModulatedDeformConv, "
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE)",
    "",
)
_COCO_CPP = (
    "the C++ COCO evaluator (COCOEvaluator's default use_fast_impl=True)",
    " Evaluate with pycocotools instead: COCOEvaluator(dataset_name, ..., use_fast_impl=False).",
)

_NEEDED_BY = {
    "box_iou_rotated": _ROTATED,
    "nms_rotated": _ROTATED,
    "roi_align_rotated_forward": _ROTATED,
    "roi_align_rotated_backward": _ROTATED,
    "deform_conv_forward": _DEFORM,
    "deform_conv_backward_input": _DEFORM,
    "deform_conv_backward_filter": _DEFORM,
    "modulated_deform_conv_forward": _DEFORM,
    "modulated_deform_conv_backward": _DEFORM,
    "COCOevalAccumulate": _COCO_CPP,
    "COCOevalEvaluateImages": _COCO_CPP,
    "InstanceAnnotation": _COCO_CPP,
    "ImageEvaluation": _COCO_CPP,
}


def get_compiler_version():
    return _NOT_BUILT


def get_cuda_version():
    return _NOT_BUILT


def has_cuda():
    # collect_env.py runs cuobjdump on _C.__file__ only when this is true.
    return False


def _missing_op(name):
    what, instead = _NEEDED_BY.get(name, ("a feature that needs detectron2's compiled ops", ""))

    def op(*args, **kwargs):
        raise RuntimeError(
            f"detectron2._C.{name} is not available: this detectron2 has no compiled ops "
            f"(pb1-detectron2==0.6 adapted by resnet_backbone's tools/install_detectron2.py). "
            f"It is needed for {what}.{instead} {_FULL_BUILD}"
        )

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Unavailable compiled op {name}: calling it raises RuntimeError."
    return op


for _name in _NEEDED_BY:
    globals()[_name] = _missing_op(_name)


def __getattr__(name):
    # Any other op of the compiled extension: a callable that raises when called.
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing_op(name)


# v0.6 calls rotated NMS as torch.ops.detectron2.nms_rotated, which the compiled extension
# registers; register a stand-in op with the same schema that raises the same message.
try:
    import torch as _torch

    _LIB = _torch.library.Library("detectron2", "FRAGMENT")
    _LIB.define("nms_rotated(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def _nms_rotated(dets, scores, iou_threshold):
        return nms_rotated(dets, scores, iou_threshold)  # noqa: F821 (defined above)

    _LIB.impl("nms_rotated", _nms_rotated, "CompositeExplicitAutograd")
except Exception:  # never fail at import; calling the op then fails in torch.ops instead
    pass
'''


def fingerprint():
    """Identifies the adaptation: archive + patches + stand-in. Stored in detectron2/_C.py."""
    h = hashlib.sha256()
    h.update(ARCHIVE_SHA256.encode())
    h.update(repr(PATCHES).encode())
    h.update(C_STANDIN.encode())
    return "pb1-detectron2-0.6+rb." + h.hexdigest()[:12]


def _count(text, old):
    if old.startswith("re:"):
        return len(re.findall(old[3:], text))
    return text.count(old)


def apply_patches(tree):
    """Apply PATCHES to the extracted archive at `tree`; raise SetupError on any mismatch."""
    tree = Path(tree)
    for rel, old, new, expected, reason in PATCHES:
        f = tree / rel
        if not f.is_file():
            raise SetupError(
                f"patch failed: {rel} is missing from the archive (patch: {reason})"
            )
        text = f.read_text(encoding="utf-8")
        found = _count(text, old)
        if found != expected:
            raise SetupError(
                f"patch failed: expected {expected} occurrence(s) of {old!r} in {rel}, found "
                f"{found}. The {ARCHIVE_REQ} archive is not the one this installer was written "
                f"for (patch: {reason})"
            )
        if old.startswith("re:"):
            text = re.sub(old[3:], new, text)
        else:
            text = text.replace(old, new)
        f.write_text(text, encoding="utf-8")
    for pattern, what in FORBIDDEN_AFTER_PATCHING:
        for f in sorted([*(tree / "detectron2").rglob("*.py"), *(tree / "projects").rglob("*.py")]):
            text = f.read_text(encoding="utf-8")
            if _count(text, pattern):
                raise SetupError(
                    f"patch check failed: {f.relative_to(tree)} still uses {what} "
                    f"({pattern!r}); add a patch for it to tools/install_detectron2.py"
                )
    standin = tree / "detectron2" / "_C.py"
    if standin.exists() or list((tree / "detectron2").glob("_C.*")):
        raise SetupError(
            "the archive already has a detectron2/_C module; the stand-in would shadow it"
        )
    standin.write_text(C_STANDIN.replace("@FINGERPRINT@", fingerprint()), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The target environment.
# --------------------------------------------------------------------------------------------
def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    r = subprocess.run([str(c) for c in cmd], **kw)
    if r.returncode != 0:
        raise SetupError(f"exit code {r.returncode} from: {' '.join(map(str, cmd))}")
    return r


def py_json(python, code):
    """Run `code` in the target interpreter (from a neutral folder); parse its last line."""
    r = subprocess.run(
        [str(python), "-c", code],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
    )
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise SetupError(f"{python} failed to run a probe:\n{r.stdout}{r.stderr}")
    return json.loads(lines[-1])


ENV_PROBE = r"""
import importlib.util as u, json, sys, ctypes
def has(m):
    try:
        return u.find_spec(m) is not None
    except Exception:
        return False
try:
    ctypes.CDLL("libGL.so.1"); gl = True
except OSError:
    gl = False
print(json.dumps({"prefix": sys.prefix, "version": list(sys.version_info[:3]),
    "torch": has("torch"), "torchvision": has("torchvision"), "cv2": has("cv2"), "libgl": gl}))
"""

D2_PROBE = r"""
import json, traceback
r = {"present": False, "ok": False, "adapted": None, "file": None, "version": None,
     "pb1_dist": False, "error": None, "missing_module": None, "imported_by": None}
try:
    import detectron2
    r["present"] = True
    r["file"] = detectron2.__file__
    try:  # is the detectron2 that imports the one the pb1-detectron2 distribution installed?
        import importlib.metadata as md, os
        f = md.distribution("pb1-detectron2").locate_file("detectron2/__init__.py")
        r["pb1_dist"] = os.path.realpath(str(f)) == os.path.realpath(detectron2.__file__)
    except Exception:
        pass
    r["version"] = getattr(detectron2, "__version__", None)
    from detectron2 import _C
    r["adapted"] = getattr(_C, "__adapted_by__", None)
    import cv2
    import detectron2.layers, detectron2.modeling, detectron2.data, detectron2.engine
    import detectron2.evaluation, detectron2.checkpoint, detectron2.utils.collect_env
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    get_cfg().merge_from_file(model_zoo.get_config_file("@CONFIG@"))
    r["ok"] = True
except ModuleNotFoundError as e:
    r["error"] = traceback.format_exc()
    r["missing_module"] = e.name
    r["imported_by"] = traceback.extract_tb(e.__traceback__)[-1].filename
    if e.name == "detectron2":
        r["present"] = False
except Exception:
    r["error"] = traceback.format_exc()
print(json.dumps(r))
""".replace("@CONFIG@", PROBE_CONFIG)


def probe_detectron2(python):
    return py_json(python, D2_PROBE)


def pip(python, *args):
    return run([python, "-m", "pip", *args])


def fetch_archive(python):
    """The pb1-detectron2 0.6 source archive, fetched with the target's pip and its config."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    archive = WORK_DIR / ARCHIVE_NAME
    if archive.is_file() and _sha256(archive) == ARCHIVE_SHA256:
        return archive
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
        # The archive's setup.py imports torch, so even `pip download` needs the build run
        # without isolation, with torch already installed.
        pip(python, "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
            ARCHIVE_REQ, "-d", tmp)
        got = Path(tmp) / ARCHIVE_NAME
        if not got.is_file():
            raise SetupError(f"pip download {ARCHIVE_REQ} did not produce {ARCHIVE_NAME}: "
                             f"{sorted(os.listdir(tmp))}")
        sha = _sha256(got)
        if sha != ARCHIVE_SHA256:
            raise SetupError(
                f"{ARCHIVE_NAME} has sha256 {sha}, expected {ARCHIVE_SHA256}: the index pip "
                f"uses serves a different archive than the one the patches were written for"
            )
        shutil.move(str(got), str(archive))
    return archive


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_adapted_tree(archive):
    src = WORK_DIR / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with tarfile.open(archive) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(src, filter="data")
        else:  # Python < 3.11.4 / 3.10.12
            for m in tf.getmembers():
                if m.name.startswith(("/", "..")) or ".." in Path(m.name).parts:
                    raise SetupError(f"unsafe path in {archive}: {m.name}")
            tf.extractall(src)
    tree = src / ARCHIVE_TOP
    apply_patches(tree)
    return tree


def install_adapted_detectron2(python):
    archive = fetch_archive(python)
    tree = build_adapted_tree(archive)
    log(f"adapted {ARCHIVE_REQ} in {tree}; installing it")
    pip(python, "install", "--no-build-isolation", "--no-deps", "--force-reinstall",
        "--use-pep517", str(tree))


def ensure_detectron2(python):
    d2 = probe_detectron2(python)
    current = fingerprint()
    if d2["ok"] and d2["adapted"] is None:
        log(f"detectron2 {d2['version']} at {os.path.dirname(d2['file'])} works and is not ours: "
            "leaving it untouched")
        return
    if d2["ok"] and d2["adapted"] == current:
        log(f"detectron2: adapted {ARCHIVE_REQ} is installed and up to date ({current})")
        return
    if d2["present"] and d2["adapted"] is None and not d2["pb1_dist"]:
        if d2["missing_module"] == "pkg_resources":
            raise SetupError(
                f"the detectron2 at {os.path.dirname(d2['file'])} (not made by this installer, "
                f"so left alone) fails to import: {d2['imported_by']} imports pkg_resources, "
                "which setuptools 81 removed (upstream detectron2 main still imports it, and "
                "current torch pulls in the newest setuptools). Fix: "
                f'{python} -m pip install "setuptools<81", then run this again.'
            )
        raise SetupError(
            f"a detectron2 is installed at {d2['file']} but does not work, and it is not one "
            f"this installer made, so it is left alone. Fix it, or remove it (pip uninstall "
            f"detectron2) to get the adapted v0.6. The error was:\n{d2['error']}"
        )
    if d2["present"]:
        log("detectron2: replacing an earlier or broken adapted install "
            f"({d2['adapted'] or 'unadapted ' + ARCHIVE_DIST})")
    else:
        log(f"detectron2: none found; installing {ARCHIVE_REQ}, adapted")
    install_adapted_detectron2(python)
    d2 = probe_detectron2(python)
    if not (d2["ok"] and d2["adapted"] == current):
        raise SetupError(
            f"the adapted detectron2 does not work after installing it:\n{d2['error']}"
        )
    log(f"detectron2 {d2['version']} ({current}) works")


def install_requirements(python, env):
    files = []
    if env["torch"] and env["torchvision"]:
        log("torch and torchvision are present: keeping them (requirements/torch.txt skipped)")
    else:
        files += ["-r", REQUIREMENTS / "torch.txt"]
    files += ["-r", REQUIREMENTS / "base.txt"]
    extra = []
    if not env["cv2"]:
        # opencv-python's cv2 links libGL.so.1 and fails to import without it (minimal
        # containers, servers); the headless build has the same API minus the GUI windows.
        extra.append("opencv-python" if env["libgl"] else "opencv-python-headless")
        log(f"OpenCV: {extra[0]} (libGL.so.1 {'loads' if env['libgl'] else 'is missing'})")
    pip(python, "install", *files, *extra)


def install_project(python):
    if not any((REPO / f).is_file() for f in ("setup.py", "pyproject.toml")):
        log("no setup.py/pyproject.toml yet: skipping the editable install of this repository")
        return
    # --no-deps: its dependencies come from requirements/, and detectron2 from this script.
    pip(python, "install", "--no-deps", "--no-build-isolation", "--use-pep517", "-e", REPO)


# --------------------------------------------------------------------------------------------
# The stamp: makes a re-run with nothing changed take well under a second.
# --------------------------------------------------------------------------------------------
def stamp_inputs():
    files = sorted(REQUIREMENTS.glob("*.txt")) + [Path(__file__).resolve()]
    files += [REPO / f for f in ("setup.py", "setup.cfg", "pyproject.toml")]
    return [f for f in files if f.is_file()]


def setup_key(python):
    h = hashlib.sha256()
    h.update(str(REPO).encode() + b"\0" + str(python).encode() + b"\0")
    for f in stamp_inputs():
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stamp_path(prefix):
    """Stamp in the environment itself (it goes when the env goes), or under build/."""
    name = STAMP_PREFIX + hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    prefix = Path(prefix)
    if os.access(prefix, os.W_OK):
        return prefix / name
    return REPO / "build" / "setup-stamps" / (
        hashlib.sha256(str(prefix).encode()).hexdigest()[:12] + "-" + name
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--venv", type=Path,
                       help="environment folder: created with this interpreter if it does not "
                            "exist; an existing one (a venv or a conda env) is used as it is")
    where.add_argument("--python", type=Path,
                       help="an existing interpreter to install into (no venv is created)")
    p.add_argument("--force", action="store_true", help="ignore the stamp and check everything")
    args = p.parse_args(argv)

    t0 = time.time()
    try:
        if args.venv is not None:
            venv = args.venv if args.venv.is_absolute() else Path.cwd() / args.venv
            python = venv / "bin" / "python"
            if not python.exists():
                log(f"creating the virtual environment {venv} with {sys.executable}")
                run([sys.executable, "-m", "venv", venv])
        else:
            python = args.python if args.python.is_absolute() else Path.cwd() / args.python
            if not python.exists():
                found = shutil.which(str(args.python))
                if not found:
                    raise SetupError(f"no interpreter at {args.python}")
                python = Path(found)

        key = setup_key(python)
        if args.venv is not None:
            stamp = stamp_path(python.parent.parent)
            if not args.force and stamp.is_file() and stamp.read_text().strip() == key:
                log(f"{python.parent.parent} is set up (stamp {stamp.name}; --force or "
                    "FORCE=1 re-checks)")
                return 0
        env = py_json(python, ENV_PROBE)
        if args.venv is None:
            stamp = stamp_path(env["prefix"])
            if not args.force and stamp.is_file() and stamp.read_text().strip() == key:
                log(f"{python} is set up (stamp {stamp}; --force or FORCE=1 re-checks)")
                return 0

        log(f"setting up {python} (Python {'.'.join(map(str, env['version']))})")
        if stamp.exists():
            stamp.unlink()
        install_requirements(python, env)
        ensure_detectron2(python)
        install_project(python)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key + "\n")
        log(f"done in {time.time() - t0:.0f} s")
        return 0
    except SetupError as e:
        print(f"[setup] ERROR: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
