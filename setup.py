"""Install resnet_backbone: He et al. 2015 residual and plain networks as Detectron2 backbones.

Detectron2 itself is not listed in install_requires: PyPI has no installable build of it, so
`tools/install_detectron2.py` (run by `make`) provides one, or leaves a source build alone.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def version():
    """The version, stated once in resnet_backbone/version.py, read as text: importing the
    package would need Detectron2 at build time."""
    text = (HERE / "resnet_backbone" / "version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def requirements(name):
    """The requirement lines of requirements/<name> (the file `make` installs from too)."""
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="resnet_backbone",
    version=version(),
    description="ResNet-18..152, plain nets and VGG-16 as Detectron2 backbones (He et al. 2015)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="resnet_backbone contributors",
    maintainer="resnet_backbone contributors",
    # No public repository address exists yet; add "Source" here once it is published.
    project_urls={
        "Paper": "https://arxiv.org/abs/1512.03385",
        "Detectron2": "https://github.com/facebookresearch/detectron2",
    },
    license="Apache-2.0",
    license_files=["LICENSE"],
    keywords="detectron2 resnet object-detection faster-rcnn backbone",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    # configs/ and tools/ stay the one copy of the YAMLs and the command-line tools; wheels ship
    # them as resnet_backbone/configs (resnet_backbone.model_zoo finds either) and
    # resnet_backbone/tools (`python -m resnet_backbone.tools.train_net ...` for pip users).
    packages=find_packages(include=("resnet_backbone", "resnet_backbone.*"))
    + ["resnet_backbone.configs", "resnet_backbone.tools"],
    package_dir={"resnet_backbone.configs": "configs", "resnet_backbone.tools": "tools"},
    # The YAML configs and the LazyConfig ones (configs/common/**.py, configs/*/*.py).
    package_data={"resnet_backbone.configs": ["*.yaml", "*/*.yaml", "*/*.py", "*/*/*.py"]},
    python_requires=">=3.8",
    install_requires=["torch>=1.10", "torchvision", "fvcore>=0.1.5.post20221221", "pycocotools",
                      "safetensors>=0.4"],
    # Only tools/export_model.py --format onnx needs these: pip install resnet_backbone[export].
    extras_require={"export": requirements("export.txt")},
    # Detectron2 has no plugin discovery of its own; this entry point lets tools find the
    # package (importlib.metadata.entry_points(group="detectron2.backbones")) and import it,
    # which registers every builder below into Detectron2's registries.
    entry_points={
        "detectron2.backbones": [
            "build_paper_resnet_backbone = "
            "resnet_backbone.modeling.resnet:build_paper_resnet_backbone",
            "build_paper_resnet_fpn_backbone = "
            "resnet_backbone.modeling.fpn:build_paper_resnet_fpn_backbone",
            "build_vgg16_backbone = resnet_backbone.modeling.vgg:build_vgg16_backbone",
            "build_vgg16_fpn_backbone = resnet_backbone.modeling.fpn:build_vgg16_fpn_backbone",
        ],
    },
)
