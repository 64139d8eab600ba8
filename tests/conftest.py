"""Shared fixtures: the shipped configs by name, the embedded synthetic data, tiny CPU settings,
and tools/train_net.py run in a subprocess on that data."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"
DEMO_CONFIG = REPO / "configs" / "Demo" / "resnet18_c4_synthetic.yaml"

# A detector that trains for 2 iterations on 96-pixel images in seconds on one CPU core.
TINY = (
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
    "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
)


def save_hub_named(obj, folder, stem):
    """torch.save `obj` as `<stem>-<sha256 prefix>.pth` in `folder`, the name torch hub gives
    its downloads (the readers check the prefix against the content); returns the path."""
    import torch

    temporary = Path(folder) / f"{stem}.pth.part"
    torch.save(obj, temporary)
    prefix = hashlib.sha256(temporary.read_bytes()).hexdigest()[:8]
    return temporary.rename(Path(folder) / f"{stem}-{prefix}.pth")


@pytest.fixture(scope="session")
def datasets_dir(tmp_path_factory):
    """A $DETECTRON2_DATASETS root holding a small synthetic_shapes tree (6 train, 3 val)."""
    from resnet_backbone.data import ensure_synthetic, synthetic_root

    root = tmp_path_factory.mktemp("datasets")
    ensure_synthetic(synthetic_root(str(root)), num_train=6, num_val=3)
    return root


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Every test in one torch thread, as the subprocesses the tests start (OMP_NUM_THREADS=1).
    The tests' inputs are tiny; with more threads than idle cores OpenMP's spin-waiting made a
    ResNet-50 forward 40x slower (5.8 s vs 0.13 s on a busy 2-core machine). On this project's
    2-core machine at load averages of 3-5, the fast subset (before its slow tests were marked)
    took 408 and 642 s with torch's default two threads and 267 s with one; idle, two threads
    save a tenth (79 s against 88 s for today's fast subset)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fast_subset(values, fast):
    """`values` for `pytest.mark.parametrize` with those not in `fast` marked slow: the fast
    subset checks a representative few, `make test` every one. A tuple is one parameter set."""
    slow = pytest.mark.slow
    return [value if value in fast else
            pytest.param(*(value if isinstance(value, tuple) else (value,)), marks=slow)
            for value in values]


@pytest.fixture(scope="session")
def shipped_config():
    """`shipped_config(name, KEY, value, ..., freeze=False)`: the shipped config `name` (a path
    under configs/, e.g. "Demo/resnet18_c4_synthetic.yaml") as `resnet_backbone.model_zoo
    .get_config` builds it (Detectron2's defaults, this package's keys, the `_BASE_` files), on
    the CPU (MODEL.DEVICE "cpu"), then the KEY value pairs merged in order (values as Python
    objects or as the strings of a command line). A fresh CfgNode every call, frozen if asked.
    Tests build their detectors and classifiers through it, from the shipped config that has the
    network they need, overriding only what they are about (and sizes, for speed)."""
    import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need its keys)
    from resnet_backbone import model_zoo

    def build(name, *overrides, freeze=False):
        if len(overrides) % 2:
            raise TypeError(f"shipped_config({name!r}, ...): overrides come in KEY value pairs, "
                            f"got {overrides!r}")
        cfg = model_zoo.get_config(name)
        cfg.MODEL.DEVICE = "cpu"
        cfg.merge_from_list(list(overrides))
        if freeze:
            cfg.freeze()
        return cfg

    return build


# What tests/test_weights.py and tests/test_layers.py ask a fresh interpreter: after `import
# resnet_backbone` alone, whether imagenet:// names resolve; after building a detection config,
# which modules of the classification half are loaded and whether its registry entry and keys
# are there.
FRESH_IMPORT = """\
import json, sys
import resnet_backbone
from detectron2.utils.file_io import PathManager
facts = {"imagenet_name_is_a_file": PathManager.isfile("imagenet://torchvision/resnet50")}
from resnet_backbone import model_zoo
from detectron2.modeling import META_ARCH_REGISTRY
cfg = model_zoo.get_config("Demo/resnet18_c4_synthetic.yaml")
facts.update(classification_modules=sorted(m for m in sys.modules if "classification" in m),
             image_classifier_registered="ImageClassifier" in META_ARCH_REGISTRY,
             classifier_keys_in_detection_config=["CLASSIFIER" in cfg.MODEL, "CLS" in cfg.INPUT])
print(json.dumps(facts))
"""


@pytest.fixture(scope="session")
def fresh_import():
    """FRESH_IMPORT's answers (a dict), from one subprocess for the session: importing torch and
    Detectron2 takes a fresh interpreter seconds."""
    result = subprocess.run([sys.executable, "-c", FRESH_IMPORT], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def demo_config():
    """The shipped demo config (ResNet-18 C4 on the synthetic data), a Path."""
    return DEMO_CONFIG


@pytest.fixture(scope="session")
def tiny():
    """Config overrides (KEY VALUE ...) for a tiny CPU run; later pairs override earlier ones."""
    return TINY


class TrainNet:
    """Runs tools/train_net.py (or a driver script) in a subprocess on a datasets root."""

    def __init__(self, datasets):
        self.datasets = datasets

    def env(self, **extra):
        return dict(os.environ, DETECTRON2_DATASETS=str(self.datasets), OMP_NUM_THREADS="1",
                    RESNET_BACKBONE_DIST_TIMEOUT_MIN="1", **extra)

    def command(self, *args, config=DEMO_CONFIG, script=TRAIN_NET):
        config_args = ("--config-file", str(config)) if config else ()
        return [sys.executable, str(script), *config_args, *args]

    def __call__(self, *args, config=DEMO_CONFIG, script=TRAIN_NET, timeout=600, **env):
        return subprocess.run(self.command(*args, config=config, script=script),
                              capture_output=True, text=True, env=self.env(**env), cwd=REPO,
                              timeout=timeout)

    def popen(self, *args, config=DEMO_CONFIG, script=TRAIN_NET, **kwargs):
        return subprocess.Popen(self.command(*args, config=config, script=script),
                                env=self.env(), cwd=REPO, **kwargs)

    def kill_after_first_checkpoint(self, output_dir, *args, config=DEMO_CONFIG, script=TRAIN_NET):
        """Start the run writing to `output_dir` (`args` must point OUTPUT_DIR there), SIGKILL it
        as soon as its first checkpoint is complete, and check that it had not finished."""
        process = self.popen(*args, config=config, script=script, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 300
            while not (output_dir / "last_checkpoint").exists():
                assert process.poll() is None, "training ended before writing a checkpoint"
                assert time.time() < deadline
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            assert process.wait(60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        assert not (output_dir / "model_final.pth").exists(), "the kill came too late to test"


@pytest.fixture(scope="session")
def train_net(datasets_dir):
    """`train_net(*args, config=..., script=..., ENV=value)`: a CompletedProcess (text output)
    of tools/train_net.py run with `--config-file` (default: the demo config) on `datasets_dir`;
    `.command`, `.env` and `.popen` build the same run for other launchers."""
    return TrainNet(datasets_dir)
