#!/usr/bin/env python
"""Generate the seeded synthetic shapes detection dataset (COCO and VOC forms).

  python tools/make_synthetic_data.py                      # $DETECTRON2_DATASETS/synthetic_shapes
  python tools/make_synthetic_data.py --root DIR --seed 0 --num-train 200 --num-val 50 --preview 8

Training on a synthetic_shapes split generates the default tree by itself; this command is for
other parameters and for looking at the data (--preview draws the boxes of N val images).
"""
import argparse
import dataclasses
import os
import sys

try:
    import resnet_backbone  # noqa: F401
except ImportError:  # run from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resnet_backbone.data import synthetic, synthetic_root  # noqa: E402

def save_previews(root, count, out_dir):
    """Draw the labelled boxes of the first `count` val images with Detectron2's Visualizer."""
    from detectron2.data import MetadataCatalog
    from detectron2.utils.visualizer import Visualizer
    from PIL import Image

    from resnet_backbone.data import SHAPE_CLASSES, load_voc_split
    from resnet_backbone.data.layout import SYNTHETIC_VOC_DIRNAME
    from resnet_backbone.files import atomic_write

    os.makedirs(out_dir, exist_ok=True)
    voc = os.path.join(root, SYNTHETIC_VOC_DIRNAME)  # the same images and boxes as the COCO form
    for record in load_voc_split(voc, "val", SHAPE_CLASSES)[:count]:
        image = Image.open(record["file_name"]).convert("RGB")
        drawn = Visualizer(image, MetadataCatalog.get("synthetic_shapes_val"))
        picture = Image.fromarray(drawn.draw_dataset_dict(record).get_image())
        name = os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png"
        atomic_write(os.path.join(out_dir, name), lambda f: picture.save(f, format="PNG"))


def main(argv=None):
    fields = dataclasses.fields(synthetic.SyntheticParams)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None,
                        help="output directory (default: $DETECTRON2_DATASETS/synthetic_shapes)")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    parser.add_argument("--preview", type=int, default=0, metavar="N",
                        help="also write N val images with their boxes drawn to <root>_preview/")
    for field in fields:
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default),
                            default=field.default, dest=field.name,
                            help=f"{field.metadata['help']} (default: %(default)s)")
    args = parser.parse_args(argv)
    root = synthetic_root() if args.root is None else args.root
    params = synthetic.SyntheticParams(**{f.name: getattr(args, f.name) for f in fields})
    was_complete = not args.force and synthetic.is_complete(root, params)
    try:
        if not was_complete:
            synthetic.write_synthetic(root, params, force=args.force)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"synthetic_shapes at {os.path.abspath(root)}: "
          + ("already up to date" if was_complete else "written"))
    for split, info in synthetic.read_manifest(root)["splits"].items():
        print(f"  {split}: {info['images']} images, {info['objects']} objects "
              f"{info['objects_per_class']}")
    if args.preview:
        out = os.path.abspath(root).rstrip(os.sep) + "_preview"
        save_previews(root, args.preview, out)
        print(f"  previews: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
