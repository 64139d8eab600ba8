#!/usr/bin/env python
"""Convert an ImageNet checkpoint to this package's names, with its pixel format recorded.

  python tools/convert_pretrained.py resnet50-0676ba61.pth --output R-50-torchvision.safetensors
  python tools/convert_pretrained.py R-101.pkl --source msra --output R-101-msra.safetensors
  python tools/convert_pretrained.py --name torchvision/vgg16 --output vgg16.pth   # downloads
  python tools/convert_pretrained.py --list

The output is safetensors when its name ends in .safetensors (no pickle: the format to share),
else a torch file; both record the architecture and pixel format. Inputs are read as data only
(a pickle that asks to run code is refused). Prints the architecture, the pixel format and the
config keys a training config must set for the weights. MODEL.WEIGHTS: imagenet://<name> does
the same conversion on the fly.
"""
import argparse
import os
import sys

try:
    import resnet_backbone  # noqa: F401
except ImportError:  # run from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resnet_backbone.weights.checkpoint import convert_file  # noqa: E402
from resnet_backbone.weights.convert import CONVERTERS  # noqa: E402
from resnet_backbone.weights.imagenet import fetch_raw_file  # noqa: E402
from resnet_backbone.weights.metadata import required_config  # noqa: E402
from resnet_backbone.weights.published import KNOWN_WEIGHTS, get_known_weights  # noqa: E402


def config_settings(metadata, output):
    """(key, text) of every config key the converted weights need."""
    def as_text(value):
        if isinstance(value, list):
            return "[" + ", ".join(f"{v:g}" for v in value) + "]"
        return str(value)

    return [("MODEL.WEIGHTS", output)] + [(key, as_text(value))
                                          for key, value in required_config(metadata)]


def as_yaml(settings):
    """Nested YAML of dotted (key, value) pairs, in first-seen order."""
    tree = {}
    for key, value in settings:
        node = tree
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    lines = []

    def emit(node, indent):
        for key, value in node.items():
            if isinstance(value, dict):
                lines.append(" " * indent + key + ":")
                emit(value, indent + 2)
            else:
                lines.append(" " * indent + f"{key}: {value}")

    emit(tree, 0)
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", nargs="?", help="a local torchvision .pth or Caffe2/MSRA .pkl")
    parser.add_argument("--name", choices=sorted(KNOWN_WEIGHTS),
                        help="a known checkpoint (taken from a local cache or downloaded)")
    parser.add_argument("--source", choices=sorted(CONVERTERS),
                        help="what the input is (default: detected from its names)")
    parser.add_argument("--output", help="the converted file to write: .safetensors or .pth")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--list", action="store_true", help="list the known checkpoints")
    args = parser.parse_args(argv)
    if not args.list:
        if (args.input is None) == (args.name is None):
            parser.error("give either an input file or --name")
        if not args.output:
            parser.error("--output is required")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for name, entry in sorted(KNOWN_WEIGHTS.items()):
            print(f"{name:24s} {entry.arch:10s} {entry.pixel_format.key:12s} {entry.url}")
        return 0
    if os.path.exists(args.output) and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    name = url = expected_arch = None
    source = args.source
    if args.name:
        entry = get_known_weights(args.name)
        try:
            raw = fetch_raw_file(entry)
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        name, url, expected_arch = entry.name, entry.url, entry.arch
        source = source or entry.source
    else:
        raw = args.input
    try:
        metadata = convert_file(raw, args.output, source=source, name=name, url=url,
                                expected_arch=expected_arch)
    except ValueError as error:  # names the file (unreadable, unsafe, not convertible)
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"converted {raw} ({metadata['source']}) -> {args.output}")
    print(f"architecture: {metadata['arch']}")
    print(
        f"pixel format: {metadata['pixel_format']} ({metadata['input_format']}, mean "
        f"{metadata['pixel_mean']}, std {metadata['pixel_std']})"
    )
    settings = config_settings(metadata, args.output)
    print("set in the training config (YAML):")
    for line in as_yaml(settings):
        print("  " + line)
    print("or on the train_net command line:")
    print("  " + " ".join(f'{key} "{value}"' if " " in value else f"{key} {value}"
                          for key, value in settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
