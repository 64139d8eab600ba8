"""What a checkpoint records about the network it holds, and the config keys that follow from it.

Every file this package writes (converted ImageNet weights, a classifier exported for detection,
each training checkpoint) carries a `resnet_backbone` entry: the record of the network
(`description.describe` of the built modules: `arch`, and for ResNets the fields of
`fields.FIELDS`) and the pixel format it was trained with. Training checkpoints and exported
classifiers take both from the model itself (`metadata_of_model`); converted ImageNet weights
from the network the converters fill (`convert.strict.published_network`). `required_config`
turns a record into the config keys and values a run must use (the converter's printout).
"""
from ..modeling.description import YACS, describe, record_of_metadata, required_settings
from .convert.strict import published_network
from .published import PIXEL_FORMATS, SOURCE_PIXEL_FORMATS, pixel_format_of
from .safe_load import METADATA_KEY  # noqa: F401 (where files keep these records)

# Bumped when the converters change what they write: cached files of another version are redone.
# 2: converted ResNets record `residual` and `shortcut`.
# 3: records are read from the built network: `depth`, `block`, `stem`, widths and `norm` too.
CONVERTER_VERSION = 3
REQUIRED_METADATA = ("arch", "source", "pixel_format", "input_format", "pixel_mean", "pixel_std")


def metadata_of_record(record, source, pixel_format, **extra):
    """The `resnet_backbone` entry of a file holding the network `record` describes (from
    `describe`), fed pixels in `pixel_format` (a `weights.PixelFormat`); `extra` entries that
    are None are left out."""
    metadata = {
        "arch": record["arch"],
        "source": source,
        "pixel_format": pixel_format.key,
        "input_format": pixel_format.input_format,
        "pixel_mean": [float(x) for x in pixel_format.pixel_mean],
        "pixel_std": [float(x) for x in pixel_format.pixel_std],
        "converter_version": CONVERTER_VERSION,
    }
    metadata.update((key, value) for key, value in record.items() if key != "arch")
    metadata.update((key, value) for key, value in extra.items() if value is not None)
    return metadata


def make_metadata(arch, source, **extra):
    """The `resnet_backbone` entry of published ImageNet weights of `arch` converted from
    `source` (a key of `weights.SOURCE_PIXEL_FORMATS`): the record of the network they fill,
    with the source's pixel format and stride placement."""
    if source not in SOURCE_PIXEL_FORMATS:
        raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCE_PIXEL_FORMATS)}")
    pixel_format = PIXEL_FORMATS[SOURCE_PIXEL_FORMATS[source]]
    network = published_network(arch, stride_in_1x1=bool(pixel_format.stride_in_1x1))
    return metadata_of_record(describe(network), source, pixel_format, **extra)


def pixel_format_of_model(model, input_format=None):
    """The pixel format a (real, not meta) model normalises its input to: its `pixel_mean` /
    `pixel_std` buffers and `input_format` (`input_format` where the model keeps none, as
    Detectron2's ProposalNetwork); None for a model without them (a bare backbone)."""
    input_format = getattr(model, "input_format", None) or input_format
    if input_format is None or not hasattr(model, "pixel_mean"):
        return None
    if model.pixel_mean.is_meta:
        raise ValueError(f"{type(model).__name__} is a skeleton on the meta device: its "
                         "pixel_mean/pixel_std hold no values; take the run's pixel format from "
                         "its config (weights.pixel_format_of)")
    return pixel_format_of(input_format, _decimals(model.pixel_mean), _decimals(model.pixel_std))


def _decimals(buffer):
    """A buffer's values as the decimals they were given as: numpy's shortest text of a float32
    (123.675, not the 123.67500305 a Python float of it holds)."""
    return [float(str(value)) for value in buffer.detach().cpu().flatten().numpy()]


def metadata_of_model(model, source, *, input_format=None, **extra):
    """The `resnet_backbone` entry of a checkpoint of `model` (a detector or classifier built
    by any route, DistributedDataParallel unwrapped): the record of its backbone as built and
    the pixel format of its own buffers (`pixel_format_of_model`); None for backbones this
    package does not describe, or a model without a pixel format."""
    model = getattr(model, "module", model)
    record = describe(getattr(model, "backbone", None))
    pixel_format = pixel_format_of_model(model, input_format)
    if record is None or pixel_format is None:
        return None
    return metadata_of_record(record, source, pixel_format, **extra)


def required_config(metadata):
    """[(config key, value)] a run must set to use the weights `metadata` describes: the pixel
    format, and the required fields of its record that apply (`fields.FIELDS`: for ResNets the
    depth, the stride placement of bottlenecks, plain or residual, the shortcut option, the
    widths), where recorded."""
    pixels = (metadata["input_format"], [float(x) for x in metadata["pixel_mean"]],
              [float(x) for x in metadata["pixel_std"]])
    return list(zip(YACS.pixels, pixels)) + required_settings(record_of_metadata(metadata), YACS)
