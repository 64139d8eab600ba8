"""The shipped configs by name, as `detectron2.model_zoo` offers Detectron2's:
`get_config("PascalVOC-Detection/resnet101_c4_voc0712.yaml")`.

setup.py ships the repository's configs/ inside the package (resnet_backbone/configs); an
editable install or a checkout has no such copy and reads configs/ beside the package.
"""
from pathlib import Path

from detectron2.config import CfgNode, get_cfg

from .config import add_resnet_backbone_config

# MODEL.META_ARCHITECTURE -> the function adding the keys of its configs, for those that are
# not detectors; `resnet_backbone.classification` adds "ImageClassifier" when imported.
CONFIG_KEYS = {}


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


def meta_architecture(config_file):
    """The MODEL.META_ARCHITECTURE a config file (its `_BASE_` files included) sets, or None;
    read before merging, when the keys its merge needs are still to be chosen."""
    model = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True).get("MODEL") or {}
    return model.get("META_ARCHITECTURE")


def get_config(config_path):
    """A shipped config merged, `_BASE_` files included, into Detectron2's defaults plus this
    package's keys: those `CONFIG_KEYS` names for its MODEL.META_ARCHITECTURE (the
    classifiers' once `resnet_backbone.classification` is imported), else the detection keys,
    else (a base file that names no META_ARCHITECTURE) the first registered set that takes it."""
    path = get_config_file(config_path)
    meta = meta_architecture(path)
    if meta in CONFIG_KEYS:
        candidates = [CONFIG_KEYS[meta]]
    else:
        candidates = [add_resnet_backbone_config, *CONFIG_KEYS.values()]
    for add_config in candidates:
        cfg = add_config(get_cfg())
        try:
            cfg.merge_from_file(path)
            return cfg
        except KeyError as error:
            unknown = error
    raise KeyError(f"{config_path}: {unknown}; configs of the classifiers need "
                   "`import resnet_backbone.classification` first (it adds their keys)") from None
