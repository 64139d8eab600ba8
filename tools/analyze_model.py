"""Parameters and multiply-adds of the paper's networks next to its Table 1.

Builds each ImageNet classification network from this package (ResNet-18..152 and their plain
counterparts: stem + res2..res5 + global average pool + 1000-way fc; VGG-16: 13 convs + pool5 +
fc6/fc7/fc8), counts it with fvcore at 224x224 (one multiply-add = one flop, the paper's unit)
and prints a markdown table beside the paper's numbers:

    python tools/analyze_model.py
    python tools/analyze_model.py --depths 50 --stride-in-3x3     # torchvision's placement
    python tools/analyze_model.py --json analysis.json
"""
import argparse
import json
import sys
import warnings

# Detectron2 v0.6 scripts functions at import time, which torch >= 2.9 reports as deprecated.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
import time

from resnet_backbone.analysis import analyze, format_analysis  # noqa: E402
from resnet_backbone.resnet import DEPTH_TABLE  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--depths", type=int, nargs="+", default=sorted(DEPTH_TABLE), choices=sorted(DEPTH_TABLE),
        metavar="DEPTH", help="ResNet depths to count (default: all of Table 1)",
    )
    parser.add_argument(
        "--input-size", type=int, default=224,
        help="side of the square input image (default 224, the size of the paper's counts)",
    )
    parser.add_argument(
        "--stride-in-3x3", action="store_true",
        help="put the bottleneck's stride in its 3x3 conv (torchvision) instead of the first 1x1 "
        "(MSRA's models, which Table 1 counts)",
    )
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain nets")
    parser.add_argument("--no-vgg", action="store_true", help="leave out VGG-16")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows = analyze(
        args.depths, input_size=args.input_size, stride_in_1x1=not args.stride_in_3x3,
        plain=not args.no_plain, vgg=not args.no_vgg,
    )
    placement = "3x3 conv (torchvision)" if args.stride_in_3x3 else "first 1x1 conv (MSRA)"
    print(
        f"Paper Table 1 check: ImageNet classifiers at {args.input_size}x{args.input_size}\n"
        "- multiply-adds counted by fvcore (one multiply-add = one FLOP, the paper's unit): "
        "convs, fc, BatchNorm, pooling\n"
        "- ResNets: stem + res2..res5 + global average pool + 1000-way fc; shortcut option B "
        "(projection where the shape changes)\n"
        f"- bottleneck stride in the {placement}\n"
        "- plain nets: the same layers without shortcuts; Table 1's 18/34-layer numbers hold for "
        "them too, the paper has no plain-50/101/152\n"
        "- VGG-16: 13 convs + pool5 + fc6/fc7/fc8"
    )
    print()
    print(format_analysis(rows))
    print()
    count = f"{len(rows)} network{'s' if len(rows) != 1 else ''}"
    print(f"({count} counted in {time.perf_counter() - start:.1f} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"input_size": args.input_size, "networks": rows}, out, indent=2)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
