"""torchvision and Caffe VGG-16 checkpoints -> conv1_1..conv5_3, fc6, fc7 (the 1000-way fc8
is dropped). fc6 keeps the ImageNet layout: 4096 x 25088 over pool5 flattened in C, H, W order."""
from ...modeling.vgg import VGG16_BLOCKS
from .strict import rename


def _feature_index():
    """conv name -> its index in torchvision's `vgg16().features` (a ReLU after every conv, a
    max-pool after every block)."""
    index, position = {}, 0
    for block, (num_convs, _) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            index[f"conv{block}_{conv}"] = position
            position += 2
        position += 1
    return index


_FEATURE_INDEX = _feature_index()
_TORCHVISION_FC = {"fc6": "classifier.0", "fc7": "classifier.3"}


def _torchvision_name(name):
    layer, field = name.split(".")
    return f"{_TORCHVISION_FC.get(layer) or f'features.{_FEATURE_INDEX[layer]}'}.{field}"


def convert_torchvision_vgg16(state_dict):
    """torchvision `vgg16` -> package names."""
    return rename("torchvision VGG-16", state_dict, "vgg16", _torchvision_name,
                  lambda key: key.startswith("classifier.6."))


def _caffe_name(name):
    layer, field = name.split(".")
    return f"{layer}_{'w' if field == 'weight' else 'b'}"


def convert_caffe_vgg16(blobs):
    """Caffe/Caffe2 VGG-16 blobs (`conv1_1_w` .. `fc7_b`, Detectron's names) -> package names;
    an fc6_w stored as 4096x512x7x7 is flattened. The weights expect BGR input
    (`weights.PIXEL_FORMATS["caffe_vgg"]`)."""
    blobs = dict(blobs)
    if getattr(blobs.get("fc6_w"), "ndim", 2) == 4:
        blobs["fc6_w"] = blobs["fc6_w"].reshape(blobs["fc6_w"].shape[0], -1)
    return rename("Caffe VGG-16", blobs, "vgg16", _caffe_name,
                  lambda key: key.endswith("_momentum") or key in ("fc8_w", "fc8_b"))
