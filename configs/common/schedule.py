"""`lr_multiplier`s of the YAML configs' SOLVER rows: linear warm-up from 0.001 of the rate,
then x0.1 at each step (yacs WarmupMultiStepLR), as Detectron2's configs/common/coco_schedule.py
writes them. A leaf sets `train.max_iter = lr_multiplier.scheduler.num_updates`; like Detectron2's
schedules they are scale-invariant, so an override of `train.max_iter` alone shrinks or stretches
the whole schedule (warm-up and steps included)."""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def multistep(*, steps, max_iter, warmup_iters):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1 ** k for k in range(len(steps) + 1)],
            milestones=list(steps),
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )


lr_multiplier_voc0712 = multistep(steps=(12000, 16000), max_iter=18000, warmup_iters=100)
lr_multiplier_voc07pp12 = multistep(steps=(16000, 21000), max_iter=24000, warmup_iters=100)
lr_multiplier_coco2014 = multistep(steps=(120000,), max_iter=160000, warmup_iters=1000)
lr_multiplier_coco2017 = multistep(steps=(60000, 80000), max_iter=90000, warmup_iters=1000)
# Base-Demo-C4.yaml: from scratch with BN on the synthetic set, on a CPU.
lr_multiplier_demo = multistep(steps=(675,), max_iter=900, warmup_iters=100)
