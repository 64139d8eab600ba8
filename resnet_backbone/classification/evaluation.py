"""Top-1 and top-5 error of a classifier over a test set, gathered from every process."""
import itertools

import torch

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm


class ClassificationEvaluator(DatasetEvaluator):
    """{"classification": {"top1_err", "top5_err", "top1", "top5", "num_images"}}, in percent as
    the paper's Tables 2-4 report them."""

    def __init__(self, dataset_name, distributed=True):
        self.dataset_name, self.distributed = dataset_name, distributed
        self.reset()

    def reset(self):
        self._hits = []  # (image_id, top-1 hit, top-5 hit)

    def process(self, inputs, outputs):
        for record, output in zip(inputs, outputs):
            scores = output["scores"]
            top5 = torch.topk(scores, k=min(5, scores.numel())).indices.tolist()
            label = int(record["label"])
            self._hits.append((record["image_id"], top5[0] == label, label in top5))

    def evaluate(self):
        hits = self._hits
        if self.distributed:
            comm.synchronize()
            hits = list(itertools.chain(*comm.gather(hits, dst=0)))
            if not comm.is_main_process():
                return {}
        # An inference sampler may pad the last shard: count every image once.
        hits = list({image_id: (top1, top5) for image_id, top1, top5 in hits}.values())
        if not hits:
            raise ValueError(f"no predictions were made on {self.dataset_name}")
        top1 = 100.0 * sum(h[0] for h in hits) / len(hits)
        top5 = 100.0 * sum(h[1] for h in hits) / len(hits)
        return {"classification": {"top1_err": 100.0 - top1, "top5_err": 100.0 - top5,
                                   "top1": top1, "top5": top5, "num_images": len(hits)}}
