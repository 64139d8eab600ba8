#!/usr/bin/env python
"""Print finished runs beside the paper's Tables 7 and 8 and write a PNG chart of the same.

    python tools/report.py output/r101_voc0712 output/vgg16_voc0712 \
        [--markdown output/report.md] [--chart output/report.png]
"""
import argparse

from resnet_backbone.report import write_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs of finished tools/train_net.py runs")
    parser.add_argument("--markdown", default="report.md")
    parser.add_argument("--chart", default="report.png")
    args = parser.parse_args(argv)
    print(write_report(args.runs, args.markdown, args.chart))
    print(f"written: {args.markdown}, {args.chart}")


if __name__ == "__main__":
    main()
