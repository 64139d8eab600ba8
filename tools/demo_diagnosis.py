#!/usr/bin/env python
"""Where a trained demo detector's accuracy goes, measured four ways on the synthetic data:

* val AP50, as training's evaluation scores it;
* train AP50: the same on the 200 training images (a large lead over val is overfitting);
* RPN recall: the share of the validation objects that one of the test-time proposals
  (MODEL.RPN.POST_NMS_TOPK_TEST per image) covers at IoU >= 0.5 (low recall: the RPN misses,
  not the box head);
* val AP50 after precise BN: the BN layers' running statistics re-estimated with the trained
  weights fixed, as the true average over training batches (fvcore's update_bn_stats, what
  Detectron2's PreciseBN hook does). A net trained from scratch with a high learning rate can
  test with running statistics that no longer fit its final weights; a large gain here says so.

    python tools/demo_diagnosis.py output/demo/resnet18_c4/seed0 output/demo/plain18_c4/seed0 \
        [--precise-bn-iters 200]

tools/demo.py --diagnose runs it on every run it trains. Nothing is written into the runs.
"""
import argparse
import json
import os
import sys
import tempfile

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, BoxMode, pairwise_iou
from detectron2.utils.events import EventStorage
from fvcore.nn.precise_bn import update_bn_stats
from tabulate import tabulate

from resnet_backbone import runs
from resnet_backbone.data.evaluation import build_evaluator
from resnet_backbone.engine.stream import build_resumable_train_loader

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import architecture_of  # noqa: E402

IOU = 0.5
COLUMNS = {"val_AP50": "val AP50", "train_AP50": "train AP50",
           "rpn_recall": "RPN recall (%)", "precise_bn_val_AP50": "val AP50, precise BN"}


def box_ap50(model, run, dataset, folder):
    """COCO AP50 of `model` on `dataset` (the run's evaluator, its files under `folder`)."""
    evaluator = build_evaluator(run.config, dataset, os.path.join(folder, dataset))
    results = inference_on_dataset(model, run.test_loader(dataset), evaluator)
    return results["bbox"]["AP50"]


@torch.no_grad()
def proposal_recall(model, run, dataset):
    """Percentage of `dataset`'s ground-truth boxes that a test-time proposal overlaps at IoU
    >= 0.5 (proposals scaled back to the original image, as the boxes are)."""
    records = {r["image_id"]: r for r in DatasetCatalog.get(dataset)}
    model.eval()
    found = total = 0
    for batch in run.test_loader(dataset):
        images = model.preprocess_image(batch)
        proposals, _ = model.proposal_generator(images, model.backbone(images.tensor), None)
        for inputs, size, proposal in zip(batch, images.image_sizes, proposals):
            record = records[inputs["image_id"]]
            truth = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                     for a in record.get("annotations", [])]
            if not truth:
                continue
            boxes = proposal.proposal_boxes.clone()
            boxes.scale(inputs["width"] / size[1], inputs["height"] / size[0])
            total += len(truth)
            if len(boxes):
                best = pairwise_iou(Boxes(torch.tensor(truth, dtype=torch.float32)), boxes)
                found += int((best.max(dim=1).values >= IOU).sum())
    return 100.0 * found / max(total, 1)


def precise_bn(model, cfg, iters):
    """Re-estimate every BN layer's running statistics over `iters` training batches (the
    run's own training stream, augmentation included), the weights unchanged."""
    model.train()
    with EventStorage():  # the training-mode forward logs its sampling statistics there
        update_bn_stats(model, iter(build_resumable_train_loader(cfg)), iters)
    model.eval()


def diagnose(run_dir, *, precise_bn_iters=200):
    """{"network", "val_AP50", "train_AP50", "rpn_recall", "precise_bn_val_AP50"} of a finished
    demo run (its final or last checkpoint)."""
    run = runs.load_model_run(run_dir)
    model = run.build_model()
    run.checkpointer(model).load(run.weights)
    val, train = run.test_datasets[0], run.train_datasets[0]
    with tempfile.TemporaryDirectory() as folder:
        found = {"network": architecture_of(run.config), "run": run_dir,
                 "val_AP50": box_ap50(model, run, val, folder),
                 "train_AP50": box_ap50(model, run, train, folder),
                 "rpn_recall": proposal_recall(model, run, val)}
        precise_bn(model, run.config, precise_bn_iters)
        found["precise_bn_val_AP50"] = box_ap50(model, run, val, folder)
    return found


def diagnosis_table(found):
    return tabulate([[f["network"], f["run"], *(f[key] for key in COLUMNS)] for f in found],
                    ["network", "run", *COLUMNS.values()], tablefmt="github", floatfmt=".1f")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs of finished demo runs")
    parser.add_argument("--precise-bn-iters", type=int, default=200)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    found = [diagnose(run, precise_bn_iters=args.precise_bn_iters) for run in args.runs]
    print(diagnosis_table(found))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(found, f, indent=1)


if __name__ == "__main__":
    main()
