"""The shipped configs by name, as `detectron2.model_zoo` offers Detectron2's:
`get_config("PascalVOC-Detection/resnet101_c4_voc0712.yaml")`.

setup.py ships the repository's configs/ inside the package (resnet_backbone/configs); an
editable install or a checkout has no such copy and reads configs/ beside the package.
"""
from pathlib import Path

from detectron2.config import get_cfg

from .config import add_resnet_backbone_config


def config_root():
    installed = Path(__file__).with_name("configs")
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "configs"


def list_configs():
    """Every shipped config, bases included, as names relative to the config root."""
    root = config_root()
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*.yaml"))


def get_config_file(config_path):
    """The path of a shipped config, e.g. "COCO-Detection/resnet101_c4_coco2014.yaml"."""
    names = list_configs()
    if config_path not in names:
        leaves = [name for name in names if not Path(name).name.startswith("Base-")]
        raise FileNotFoundError(
            f"resnet_backbone ships no config {config_path!r} (looked in {config_root()}); "
            "available: " + ", ".join(leaves)
        )
    return str(config_root() / config_path)


def get_config(config_path):
    """A shipped config merged, `_BASE_` files included, into Detectron2's defaults plus this
    package's keys."""
    cfg = get_cfg()
    add_resnet_backbone_config(cfg)  # with the classification keys
    cfg.merge_from_file(get_config_file(config_path))
    return cfg
