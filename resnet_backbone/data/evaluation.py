"""`build_evaluator`: the evaluator reporting the paper's metric on a dataset (COCO AP for
Table 8, VOC07 11-point mAP for Table 7, submission files for VOC 2012 test, both for the
synthetic COCO-form splits), with the signature of `DefaultTrainer.build_evaluator`. Each is
one of Detectron2's evaluators or a subclass; they find a split's files through its metadata,
which resolves them under the datasets root when the evaluator is built (`LocatedMetadata`).
"""
import gzip
import importlib.machinery
import io
import logging
import os
import tarfile
from collections import defaultdict
from typing import Dict, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
)
from detectron2.utils import comm

from ..files import atomic_write
from .datasets import prepare_dataset
from .layout import SYNTHETIC_COCO_SPLITS, SYNTHETIC_VOC_SPLITS

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

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if coco_eval is not None:
            return results
        logger.warning("No detections on %s: its COCO AP is reported as 0.", self._metadata.name)
        return dict.fromkeys(results, 0.0)


class VOC07Evaluator(PascalVOCDetectionEvaluator):
    """The VOC07 11-point mAP of a synthetic COCO-form split, {"bbox_voc07": {"AP50": mAP}}:
    Detectron2's VOC evaluator run on the split's VOC-form twin (same images and boxes)."""

    def __init__(self, dataset_name: str):
        split = SYNTHETIC_COCO_SPLITS[dataset_name]
        super().__init__({s: n for n, s in SYNTHETIC_VOC_SPLITS.items()}[split])

    def process(self, inputs, outputs):
        # The twin's image ids are the file names' stems.
        voc_ids = [{"image_id": os.path.splitext(os.path.basename(i["file_name"]))[0]}
                   for i in inputs]
        super().process(voc_ids, outputs)

    def evaluate(self):
        results = super().evaluate()
        return results and {"bbox_voc07": {"AP50": results["bbox"]["AP50"]}}


class VOC2012SubmissionWriter(PascalVOCDetectionEvaluator):
    """Writes detections on VOC 2012 test for the evaluation server; computes nothing.

    <output_dir>/results/VOC2012/Main/<competition>_det_test_<class>.txt hold one line per
    detection, `<image_id> <score> <xmin> <ymin> <xmax> <ymax>` in the devkit's 1-based corners;
    <output_dir>/<dataset>_<competition>_results.tar.gz packs them for upload. comp4 is the
    track for ImageNet-pretrained models, as in the paper. The lines are those Detectron2's VOC
    evaluator collects in `process` (py-faster-rcnn's result-file format); `evaluate` writes
    them instead of scoring them, as the split's labels are held by the server.
    """

    def __init__(self, dataset_name: str, output_dir: str, competition: str = "comp4"):
        if not output_dir:
            raise ValueError(f"VOC2012SubmissionWriter({dataset_name!r}) needs an output_dir")
        super().__init__(dataset_name)
        self._split = MetadataCatalog.get(dataset_name).split
        self._output_dir = output_dir
        self._competition = competition

    def evaluate(self):
        lines = defaultdict(list)  # class index -> lines, from every process
        for part in comm.gather(self._predictions, dst=0):
            for cls, cls_lines in part.items():
                lines[cls] += cls_lines
        if not comm.is_main_process():
            return {}
        main_dir = os.path.join(self._output_dir, "results", "VOC2012", "Main")
        os.makedirs(main_dir, exist_ok=True)
        members = {}  # name in the archive (the path under output_dir) -> content
        for cls, name in enumerate(self._class_names):
            member = f"results/VOC2012/Main/{self._competition}_det_{self._split}_{name}.txt"
            # Sorted: the same files whichever process evaluated which image.
            members[member] = "".join(line + "\n" for line in sorted(lines[cls])).encode()
            atomic_write(os.path.join(self._output_dir, member),
                         lambda f, data=members[member]: f.write(data))
        archive = os.path.join(
            self._output_dir, f"{self._dataset_name}_{self._competition}_results.tar.gz"
        )
        atomic_write(archive, lambda f: _write_tar_gz(f, members))
        logger.info(
            "%s has no public labels, so no mAP here: wrote %d detections for %d classes to %s "
            "and packed them as %s. Upload that archive to the PASCAL VOC evaluation server "
            "(%s, account required) as a VOC2012 detection %s submission to get the mAP.",
            self._dataset_name, sum(map(len, lines.values())), len(members), main_dir, archive,
            VOC_SERVER, self._competition,
        )
        return {}


def _write_tar_gz(out, members: Dict[str, bytes]) -> None:
    """A reproducible .tar.gz of `members` into the binary file `out`: sorted, no timestamps or
    owners."""
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


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
