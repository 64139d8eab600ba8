"""The schedules of the YAML configs' SOLVER rows (16 images per batch, lr 0.02, warm-up 100)."""
_PAPER = dict(ims_per_batch=16, base_lr=0.02, momentum=0.9, weight_decay=0.0005,
              warmup_iters=100, checkpoint_period=5000)
VOC0712 = dict(_PAPER, steps=(12000, 16000), max_iter=18000)      # Base-VOC0712.yaml
VOC07PP12 = dict(_PAPER, steps=(16000, 21000), max_iter=24000)    # Base-VOC07pp12.yaml
COCO2014 = dict(_PAPER, steps=(120000,), max_iter=160000, warmup_iters=1000)  # Base-COCO2014.yaml
COCO2017 = dict(_PAPER, steps=(60000, 80000), max_iter=90000, warmup_iters=1000)  # Base-COCO2017
# Base-Demo-C4.yaml: from scratch with BN on the synthetic set, on a CPU.
DEMO = dict(ims_per_batch=2, base_lr=0.04, momentum=0.9, weight_decay=0.0001, warmup_iters=100,
            steps=(675,), max_iter=900, checkpoint_period=400)
