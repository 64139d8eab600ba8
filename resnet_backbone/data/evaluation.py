"""Which evaluator measures what the paper reports, per dataset.

    COCO splits (Table 8)         COCOEvaluator, bbox: "AP50" = mAP@.5, "AP" = mAP@[.5,.95]
    VOC 2007 test (Table 7)       PascalVOCDetectionEvaluator: bbox "AP50" = VOC07 11-point mAP
    VOC 2012 test (Table 7)       VOC2012SubmissionWriter: result files for the evaluation server
    synthetic_shapes_{train,val}  COCOEvaluator plus VOC07Evaluator ("bbox_voc07": {"AP50"})
    synthetic_shapes_voc_*        PascalVOCDetectionEvaluator (registered with year 2007)

`build_evaluator(cfg, dataset_name, output_folder)` has the signature of
`DefaultTrainer.build_evaluator`, so a trainer can simply delegate to it.
"""
import gzip
import importlib.machinery
import io
import logging
import math
import os
import tarfile
from collections import defaultdict
from typing import List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
)
from detectron2.evaluation.pascal_voc_evaluation import voc_ap
from detectron2.structures import BoxMode
from detectron2.utils import comm
from torchvision.ops import box_iou

from ..files import atomic_write
from .datasets import prepare_dataset
from .layout import SYNTHETIC_COCO_SPLITS

logger = logging.getLogger(__name__)

VOC_SERVER = "http://host.robots.ox.ac.uk:8080/"


def fast_coco_eval_available() -> bool:
    """True only when `detectron2._C` is a compiled extension (it holds the fast COCOeval)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    loader = getattr(getattr(_C, "__spec__", None), "loader", None)
    return isinstance(loader, importlib.machinery.ExtensionFileLoader)


class PaperCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator that reports 0 AP, not Detectron2's NaN, when the model detected nothing."""

    def reset(self):
        super().reset()
        self._num_detections = 0

    def process(self, inputs, outputs):
        super().process(inputs, outputs)
        self._num_detections += sum(len(o["instances"]) for o in outputs if "instances" in o)

    def evaluate(self, img_ids=None):
        total = self._num_detections
        if self._distributed:
            total = sum(comm.gather(self._num_detections, dst=0))
        results = super().evaluate(img_ids)
        if results and total == 0 and comm.is_main_process():
            for task, metrics in results.items():
                results[task] = {k: (0.0 if isinstance(v, float) and math.isnan(v) else v)
                                 for k, v in metrics.items()}
            logger.warning("No detections on %s: its COCO AP is reported as 0.",
                           self._metadata.name)
        return results


class _DetectionList(DatasetEvaluator):
    """Collects (class, image_id, score, XYXY box) of every detection."""

    def reset(self):
        self._detections = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to("cpu")
            for box, score, cls in zip(inst.pred_boxes.tensor.double(), inst.scores.tolist(),
                                       inst.pred_classes.tolist()):
                self._detections.append((cls, inp["image_id"], float(score), box))

    def _gathered(self):
        """Every process's detections on the main process; None on the others."""
        if not self._distributed:
            return self._detections
        parts = comm.gather(self._detections, dst=0)
        return [d for part in parts for d in part] if comm.is_main_process() else None


class VOC07Evaluator(_DetectionList):
    """PASCAL VOC 2007 mAP at IoU > 0.5 (11-point AP) for any registered detection dataset.

    Ground truth comes from `DatasetCatalog.get(dataset_name)`, so it works on COCO-form data;
    crowd boxes ("iscrowd": 1) are ignored like VOC's "difficult" ones. On VOC-form data it gives
    the number PascalVOCDetectionEvaluator gives. Results: {"bbox_voc07": {"AP50": mAP,
    "AP50-<class>": AP, ...}} in percent; classes without ground truth are left out of the mean.
    """

    def __init__(self, dataset_name: str, distributed: bool = True, iou_threshold: float = 0.5):
        self._dataset_name = dataset_name
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        self._distributed = distributed
        self._iou_threshold = iou_threshold

    def evaluate(self):
        detections = self._gathered()
        if detections is None:
            return {}

        # ground truth per (class, image): boxes and their "ignore" flags
        gt = defaultdict(lambda: [[], []])
        num_positive = np.zeros(len(self._class_names), dtype=np.int64)
        for record in DatasetCatalog.get(self._dataset_name):
            for ann in record.get("annotations", []):
                box = BoxMode.convert(list(map(float, ann["bbox"])), ann["bbox_mode"],
                                      BoxMode.XYXY_ABS)
                ignore = bool(ann.get("iscrowd", 0) or ann.get("difficult", 0))
                entry = gt[ann["category_id"], record["image_id"]]
                entry[0].append(box)
                entry[1].append(ignore)
                num_positive[ann["category_id"]] += not ignore

        per_class = {}
        for cls, name in enumerate(self._class_names):
            if num_positive[cls] == 0:
                continue
            dets = [d for d in detections if d[0] == cls]
            order = np.argsort([-d[2] for d in dets], kind="stable")
            matched = set()
            tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
            for rank, i in enumerate(order):
                _, image_id, _, box = dets[i]
                boxes, ignore = gt.get((cls, image_id), ([], []))
                if not boxes:
                    fp[rank] = 1
                    continue
                overlaps = box_iou(box[None], torch.as_tensor(boxes, dtype=torch.float64))[0]
                j = int(overlaps.argmax())
                if overlaps[j] <= self._iou_threshold:
                    fp[rank] = 1
                elif ignore[j]:
                    continue
                elif (image_id, j) in matched:
                    fp[rank] = 1  # a second detection of an object already found
                else:
                    matched.add((image_id, j))
                    tp[rank] = 1
            tp, fp = np.cumsum(tp), np.cumsum(fp)
            recall = tp / num_positive[cls]
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            per_class[name] = 100.0 * float(voc_ap(recall, precision, use_07_metric=True))

        metrics = {"AP50": float(np.mean(list(per_class.values()))) if per_class else float("nan")}
        metrics.update({f"AP50-{name}": ap for name, ap in per_class.items()})
        return {"bbox_voc07": metrics}


class VOC2012SubmissionWriter(_DetectionList):
    """Writes detections on VOC 2012 test for the evaluation server; computes nothing.

    <output_dir>/results/VOC2012/Main/<competition>_det_test_<class>.txt hold one line per
    detection, `<image_id> <score> <xmin> <ymin> <xmax> <ymax>` in the devkit's 1-based corners;
    <output_dir>/<dataset>_<competition>_results.tar.gz packs them for upload. comp4 is the
    track for ImageNet-pretrained models, as in the paper.
    """

    def __init__(self, dataset_name: str, output_dir: str, competition: str = "comp4",
                 distributed: bool = True):
        if not output_dir:
            raise ValueError(f"VOC2012SubmissionWriter({dataset_name!r}) needs an output_dir")
        meta = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._class_names = list(meta.thing_classes)
        self._split = meta.get("split", "test")
        self._output_dir = output_dir
        self._competition = competition
        self._distributed = distributed

    def evaluate(self):
        detections = self._gathered()
        if detections is None:
            return {}
        lines = defaultdict(list)  # class -> [(image_id, -score, line)]
        for cls, image_id, score, box in detections:
            x0, y0, x1, y1 = box.tolist()
            line = f"{image_id} {score:.6f} {x0 + 1:.2f} {y0 + 1:.2f} {x1:.2f} {y1:.2f}"
            lines[cls].append((image_id, -score, line))

        main_dir = os.path.join(self._output_dir, "results", "VOC2012", "Main")
        os.makedirs(main_dir, exist_ok=True)
        files = []
        for cls, name in enumerate(self._class_names):
            path = os.path.join(main_dir, f"{self._competition}_det_{self._split}_{name}.txt")
            text = "".join(line + "\n" for _, _, line in sorted(lines.get(cls, [])))
            atomic_write(path, lambda f, text=text: f.write(text.encode("utf-8")))
            files.append(path)
        archive = os.path.join(
            self._output_dir, f"{self._dataset_name}_{self._competition}_results.tar.gz"
        )
        _write_tar_gz(archive, self._output_dir, files)
        logger.info(
            "%s has no public labels, so no mAP here: wrote %d detections for %d classes to %s "
            "and packed them as %s. Upload that archive to the PASCAL VOC evaluation server "
            "(%s, account required) as a VOC2012 detection %s submission to get the mAP.",
            self._dataset_name, len(detections), len(files), main_dir, archive, VOC_SERVER,
            self._competition,
        )
        return {}


def _write_tar_gz(archive: str, base_dir: str, files: List[str]) -> None:
    """A reproducible .tar.gz: sorted members, no timestamps or owners."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(os.path.relpath(path, base_dir).replace(os.sep, "/"))
            with open(path, "rb") as f:
                data = f.read()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

    def write(out):
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw.getvalue())

    atomic_write(archive, write)


def build_evaluator(
    cfg, dataset_name: str, output_folder: Optional[str] = None
) -> DatasetEvaluator:
    """The evaluator reporting the paper's metric on `dataset_name` (see the module doc);
    output_folder defaults to <cfg.OUTPUT_DIR>/inference/<dataset_name>."""
    if dataset_name not in DatasetCatalog:
        raise KeyError(
            f"build_evaluator: dataset '{dataset_name}' is not registered. Import "
            "resnet_backbone.data to register the project's datasets, or register it yourself."
        )
    if output_folder is None:
        if cfg is None:
            raise ValueError("build_evaluator: give cfg or output_folder")
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type")
    prepare_dataset(dataset_name)

    if evaluator_type == "coco":
        coco = PaperCOCOEvaluator(
            dataset_name, tasks=("bbox",), output_dir=output_folder,
            use_fast_impl=fast_coco_eval_available(),
        )
        if dataset_name in SYNTHETIC_COCO_SPLITS:
            return DatasetEvaluators([coco, VOC07Evaluator(dataset_name)])
        return coco
    if evaluator_type == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name)
    if evaluator_type == "pascal_voc_submission":
        return VOC2012SubmissionWriter(dataset_name, output_folder)
    if meta.get("parts"):
        raise ValueError(
            f"build_evaluator: dataset '{dataset_name}' is a training set (the concatenation of "
            f"{', '.join(meta.parts)}); evaluate on one of its test splits instead."
        )
    raise ValueError(
        f"build_evaluator: no evaluator for dataset '{dataset_name}' "
        f"(evaluator_type={evaluator_type!r}); the project evaluates COCO and PASCAL VOC splits "
        "and the synthetic_shapes splits."
    )
