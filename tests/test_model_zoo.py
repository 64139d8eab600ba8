"""pip-installed, the package brings its configs: a wheel (and an editable install) built from a
copy of the source tree, installed into a fresh venv that sees this environment's torch and
detectron2, loads every shipped config by name from outside the source tree."""
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import save_hub_named
from resnet_backbone import model_zoo

REPO = Path(__file__).resolve().parents[1]

LOAD_EVERY_CONFIG = """
import json, resnet_backbone
import resnet_backbone.classification  # the classifiers' configs need their keys
from resnet_backbone import model_zoo
names = model_zoo.list_configs()
for name in names:
    model_zoo.get_config(name)
leaf = model_zoo.get_config_file("PascalVOC-Detection/resnet101_c4_voc0712.yaml")
print(json.dumps({"package": resnet_backbone.__file__, "names": names, "file": leaf}))
"""


def run(*command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_source(source):
    """A copy of what a wheel is built from: the package, configs, tools, setup.py and the files
    setup.py reads (README as long description, the extras' requirement lists, the licence)."""
    for part in ("resnet_backbone", "configs", "tools", "requirements"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source)
    return source


def fresh_venv_seeing_this_environment(path):
    """A venv without pip whose only extra packages are this environment's, through a .pth
    file (its .pth files, an editable resnet_backbone among them, are not processed; an
    editable detectron2 source build, which only such a file finds, is added by its folder)."""
    import detectron2

    paths = [*site.getsitepackages(), str(Path(detectron2.__file__).parents[1])]
    run(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent)
    python = path / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                  cwd=path.parent).strip()
    Path(purelib, "project_environment.pth").write_text("\n".join(paths) + "\n")
    return python


@pytest.mark.install
@pytest.mark.parametrize("mode", ["wheel", "editable"])
def test_installed_package_loads_every_shipped_config(tmp_path, mode):
    source = copy_source(tmp_path / "source")
    python = fresh_venv_seeing_this_environment(tmp_path / "venv")
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
           "--no-build-isolation")
    if mode == "wheel":
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
            "-w", tmp_path / "dist", source, cwd=tmp_path)
        run(*pip, *(tmp_path / "dist").glob("resnet_backbone-*.whl"), cwd=tmp_path)
        shutil.rmtree(source)  # nothing may come from the source tree
        installed = tmp_path / "venv"
    else:
        run(*pip, "-e", source, cwd=tmp_path)
        installed = source

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = json.loads(run(python, "-c", LOAD_EVERY_CONFIG, cwd=outside).splitlines()[-1])
    assert Path(result["package"]).is_relative_to(installed)
    assert Path(result["file"]).is_relative_to(installed) and Path(result["file"]).is_file()
    assert result["names"] == model_zoo.list_configs()


def installed_wheel(tmp_path):
    """The python of a fresh venv with a wheel of a copy of the source tree (configs and tools
    included) installed; the copy is gone afterwards."""
    source = copy_source(tmp_path / "source")
    python = fresh_venv_seeing_this_environment(tmp_path / "venv")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", tmp_path / "dist", source, cwd=tmp_path)
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-build-isolation", *(tmp_path / "dist").glob("resnet_backbone-*.whl"), cwd=tmp_path)
    shutil.rmtree(source)
    return python


@pytest.mark.install
@pytest.mark.slow
def test_a_pip_user_converts_trains_predicts_and_exports_with_the_shipped_tools(
        tmp_path, datasets_dir, tiny):
    """`python -m resnet_backbone.tools.<tool>` from a wheel, outside any source tree, with
    configs named as model_zoo names them."""
    import torch
    import torchvision

    python = installed_wheel(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_dir), OMP_NUM_THREADS="1")

    def tool(name, *args):
        result = subprocess.run([python, "-m", f"resnet_backbone.tools.{name}", *map(str, args)],
                                cwd=outside, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        return result.stdout

    # Every tool the wheel ships runs from it (its sibling imports and paths included).
    shipped = run(python, "-c", "import resnet_backbone.tools as t; print(list(t.__path__)[0])",
                  cwd=outside).strip()
    names = sorted(p.stem for p in Path(shipped).glob("*.py")  # the tools, not their libraries
                   if 'if __name__ == "__main__"' in p.read_text())
    assert {"train_net", "predict", "demo", "benchmark", "gpu_check"} <= set(names)
    for name in names:
        assert "usage:" in tool(name, "--help"), name

    torch.manual_seed(0)
    raw = save_hub_named(torchvision.models.resnet18().state_dict(), outside, "resnet18")
    printed = tool("convert_pretrained", raw.name, "--output", "r18.safetensors")
    assert "architecture: resnet18" in printed and (outside / "r18.safetensors").is_file()

    tool("train_net", "--config-file", "Demo/resnet18_c4_synthetic.yaml", *tiny,
         "OUTPUT_DIR", "run")
    assert (outside / "run" / "model_final.pth").is_file()

    image = next((datasets_dir / "synthetic_shapes" / "images").glob("val_*.jpg"))
    tool("predict", "--config-file", "run", "--input", image)  # to predictions/, as named
    assert [p.name for p in (outside / "predictions").iterdir()] == [image.name]

    # A user's own YAML starting from a shipped config by name (no site-packages path).
    (outside / "mine.yaml").write_text('_BASE_: "Demo/resnet18_c4_synthetic.yaml"\n'
                                       'MODEL:\n  DEVICE: cpu\n')
    tool("export_model", "--config-file", "mine.yaml", "--format", "torchscript",
         "--output", "exported", "MODEL.WEIGHTS", "run/model_final.pth")
    assert (outside / "exported" / "model.ts").is_file()
    tool("export_model", "--config-file", "run", "--output", "exported_from_run")
    assert (outside / "exported_from_run" / "model.ts").is_file()
    tool("predict", "--config-file", "Demo/resnet18_c4_synthetic.yaml", "--input", image,
         "--output", "by_name", "--opts", "MODEL.WEIGHTS", "run/model_final.pth")
    printed = tool("analyze_model", "--config-file", "Demo/resnet18_c4_synthetic.py",
                   "--tasks", "parameter", "train.device=cpu")
    assert "parameters:" in printed

    # The LazyConfig twin by its shipped name, then its run folder.
    tool("lazyconfig_train_net", "--config-file", "Demo/resnet18_c4_synthetic.py",
         "train.max_iter=2", "dataloader.train.total_batch_size=2",
         "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
         "train.output_dir=lazy_run")
    assert (outside / "lazy_run" / "lazy_config.yaml").is_file()
    tool("predict", "--config-file", "lazy_run", "--input", image, "--output", "lazy_pictures")
    assert [p.name for p in (outside / "lazy_pictures").iterdir()] == [image.name]


@pytest.mark.install
def test_the_wheel_carries_complete_release_metadata(tmp_path):
    """The wheel's METADATA names licence, project URLs, Python versions, the export extra and
    the README as its long description, and its version is resnet_backbone.__version__."""
    import email
    import zipfile

    import resnet_backbone

    source = copy_source(tmp_path / "source")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("resnet_backbone-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
        licences = [n for n in archive.namelist() if n.endswith("LICENSE")]

    assert metadata["Version"] == resnet_backbone.__version__
    assert "Apache-2.0" in (metadata["License-Expression"] or metadata["License"] or "")
    assert licences, "the wheel carries no LICENSE file"
    assert metadata["Home-page"] or metadata.get_all("Project-URL")
    assert metadata["Requires-Python"] == ">=3.8"
    assert "export" in metadata.get_all("Provides-Extra")
    extras = [r for r in metadata.get_all("Requires-Dist") if "extra ==" in r]
    assert {r.split(";")[0].strip() for r in extras} == {"onnx", "onnxruntime"}
    assert not {"onnx", "onnxruntime"} & {r.split(";")[0].strip()
                                           for r in metadata.get_all("Requires-Dist")
                                           if "extra ==" not in r}
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip().startswith("# resnet_backbone")
    assert metadata["Author"] or metadata["Author-email"]
