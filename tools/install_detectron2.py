#!/usr/bin/env python3
"""Set up a Python environment for resnet_backbone: torch, detectron2 and the rest.

    python3 tools/install_detectron2.py --venv .venv         # create .venv if needed, fill it
    python3 tools/install_detectron2.py --python /path/to/python   # use an existing environment

`make setup`, `make test` and `make demo` run this first. In order, it:

1. returns at once if a stamp file says this environment was already set up from the same
   requirement files, installer, adaptation (tools/pb1-detectron2-0.6/) and setup.py
   (``--force`` ignores the stamp);
2. installs requirements/torch.txt if the environment has no torch (an existing torch is kept),
   then requirements/base.txt, requirements/export.txt (the `export` extra: onnx, onnxruntime,
   which the export tests need) and OpenCV (opencv-python where libGL.so.1 loads, else
   opencv-python-headless);
3. keeps a detectron2 that already works (a source build of upstream main with compiled ops,
   say) untouched; otherwise fetches upstream v0.6 as the PyPI source archive
   ``pb1-detectron2==0.6`` with the user's own pip configuration, checks its sha256, extracts
   it under build/install_detectron2/, adapts it (below) and ``pip install``s the adapted tree;
4. installs this repository in editable mode (``pip install -e . --no-deps``);
5. writes the stamp.

Why the adaptation: PyPI has no installable detectron2. ``pb1-detectron2`` 0.6 is upstream v0.6's
source without its C++/CUDA sources (``detectron2/layers/csrc``), so a plain ``pip install``
fails while compiling, and v0.6's Python code predates torch 2.x, numpy 2, Pillow 10 and
setuptools 81. Faster R-CNN with axis-aligned boxes needs none of the compiled ops (torchvision
provides RoIAlign and NMS on CPU and CUDA) and COCO evaluation can use pycocotools, so the
adapted v0.6 trains and evaluates that model. Ops that do need the compiled code (rotated boxes,
deformable convolution, the C++ COCO evaluator) raise a RuntimeError that says so.

The adaptation lives in tools/pb1-detectron2-0.6/: ``adaptation.patch``, a unified diff against
the archive's top folder that says why each file changes, applied with ``git apply`` (or GNU
``patch`` where git is missing), every hunk checked before anything is written, so a changed
archive stops the install naming the file and hunk rather than being half-patched; and ``_C.py``,
the pure-Python stand-in for ``detectron2._C``, copied in with the adaptation's fingerprint
appended. None of Detectron2's code lives in this repository, apart from the lines the patch
quotes as its context.
"""
import argparse
import hashlib
import json
import os
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
# The adaptation of pb1-detectron2 0.6: a patch and a stand-in for the compiled extension, both
# in tools/pb1-detectron2-0.6/ (the patch file says why each file changes).
# --------------------------------------------------------------------------------------------
ADAPTATION = REPO / "tools" / ARCHIVE_TOP
PATCH_FILE = ADAPTATION / "adaptation.patch"  # -p1, relative to the archive's top folder
STANDIN = ADAPTATION / "_C.py"  # installed as detectron2/_C.py


def fingerprint():
    """Identifies the adaptation: the archive's hash and the patch's and stand-in's bytes.

    Installed as the stand-in's ``__adapted_by__``, so editing either file forces a re-install.
    """
    h = hashlib.sha256(ARCHIVE_SHA256.encode())
    for f in (PATCH_FILE, STANDIN):
        h.update(b"\0" + f.read_bytes())
    return "pb1-detectron2-0.6+rb." + h.hexdigest()[:12]


def apply_patch(tree, patch):
    """Apply `patch` (-p1) to the folder `tree`, all of it or nothing; SetupError if it fails.

    Uses git apply, or GNU patch where git is missing; either one first checks every hunk
    without writing, so a mismatch leaves `tree` untouched and the error names file and hunk.
    """
    tree, patch = Path(tree), Path(patch).resolve()
    env = dict(os.environ)
    if shutil.which("git"):
        # The ceiling keeps git from finding an enclosing repository (this checkout, for a tree
        # under build/), so it patches the folder as it is, like GNU patch.
        for var in ("GIT_DIR", "GIT_WORK_TREE"):
            env.pop(var, None)
        env["GIT_CEILING_DIRECTORIES"] = str(tree.resolve().parent)
        tool, apply = "git apply", ["git", "apply", "-p1", "--whitespace=nowarn"]
        steps = [apply + ["--check", patch], apply + [patch]]
    elif shutil.which("patch"):
        # --forward: a hunk found already applied is a failure, not a reason to reverse it.
        tool, apply = "patch", ["patch", "-p1", "--forward", "--batch", "--fuzz=0",
                                "--no-backup-if-mismatch", "-i", patch]
        steps = [apply + ["--dry-run"], apply]
    else:
        raise SetupError(
            f"applying {patch.name} needs git or GNU patch, and neither is on PATH: install one "
            "(e.g. apt-get install git, or patch), then run this again"
        )
    for checking, cmd in zip((True, False), steps):
        r = subprocess.run([str(c) for c in cmd], cwd=tree, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SetupError(
                f"{patch} does not apply to {tree}; {tool} says:\n"
                f"{(r.stderr + r.stdout).strip()}\n"
                + ("Nothing was changed: the " if checking else "The ")
                + f"{ARCHIVE_REQ} archive is not the one the patch was written for"
            )


def adapt(tree):
    """Turn the extracted archive at `tree` into the adapted detectron2 (patch + stand-in)."""
    tree = Path(tree)
    if list((tree / "detectron2").glob("_C.*")):
        raise SetupError(
            "the archive already has a detectron2/_C module; the stand-in would shadow it"
        )
    apply_patch(tree, PATCH_FILE)
    (tree / "detectron2" / "_C.py").write_bytes(
        STANDIN.read_bytes()
        + b"\n# Added by tools/install_detectron2.py: the adaptation this copy belongs to.\n"
        + f"__adapted_by__ = {fingerprint()!r}\n".encode()
    )


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
                f"uses serves a different archive than the one the patch was written for"
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
    adapt(tree)
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
    files += ["-r", REQUIREMENTS / "base.txt", "-r", REQUIREMENTS / "export.txt"]
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
    files = sorted(REQUIREMENTS.glob("*.txt")) + [Path(__file__).resolve(), PATCH_FILE, STANDIN]
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
