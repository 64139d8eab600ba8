"""`optimizer`: SGD over Detectron2's default parameter groups (as its configs/common/optim.py),
with the YAML configs' SOLVER values (Base-Paper-C4.yaml: Faster R-CNN's weight decay 0.0005);
`params.model` is set by the trainer."""
import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=0.0005,
)
