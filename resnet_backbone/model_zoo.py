"""The shipped configs by name, as `detectron2.model_zoo` offers Detectron2's:
`get_config("PascalVOC-Detection/resnet101_c4_voc0712.yaml")` gives a merged CfgNode,
`get_config("PascalVOC-Detection/resnet101_c4_voc0712.py")` a LazyConfig.

setup.py ships the repository's configs/ inside the package (resnet_backbone/configs); an
editable install or a checkout has no such copy and reads configs/ beside the package.
"""
from .config_files import (  # noqa: F401 (this module is where users look them up)
    CONFIG_KEYS,
    config_root,
    get_config_file,
    list_configs,
    read_lazy_config,
    yaml_config,
)


def get_config(config_path):
    """A shipped config: a LazyConfig for a `.py` name (as Detectron2's `model_zoo.get_config`);
    for a YAML name, its merge (`_BASE_` files included, every file read as data) into
    Detectron2's defaults plus this package's keys: those `CONFIG_KEYS` names for its
    MODEL.META_ARCHITECTURE (the classifiers' once `resnet_backbone.classification` is
    imported), else the detection keys."""
    path = get_config_file(config_path)
    if path.endswith(".py"):
        return read_lazy_config(path)
    return yaml_config(path)
