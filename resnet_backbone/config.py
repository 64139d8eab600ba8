"""The package's own config keys, added to a Detectron2 config by `add_resnet_backbone_config`.

The residual backbones read Detectron2's own `MODEL.RESNETS.*` and `MODEL.BACKBONE.FREEZE_AT`
keys wherever they mean the same thing (depth, norm, stride placement, output features), so an
existing Detectron2 config changes only `MODEL.BACKBONE.NAME`. What the paper has and Detectron2
does not (shortcut options, plain nets, VGG-16) lives under `MODEL.RESNET_BACKBONE` / `MODEL.VGG`.
"""
from detectron2.config import CfgNode as CN

from .fields import config_value


def check_has_keys(cfg, reader, *, node="MODEL.RESNET_BACKBONE",
                   add="add_resnet_backbone_config", module="resnet_backbone"):
    """Stop `reader` (a builder or head of this package) on a Detectron2 config that lacks the
    keys it reads (Detectron2's own tools make a config with `get_cfg()` alone)."""
    parent, _, name = node.rpartition(".")
    if name not in config_value(cfg, parent):
        raise ValueError(
            f"{reader} reads {node}.*, which this config lacks: it is a plain Detectron2 config. "
            f"Call {add}(cfg) (from {module}) on the config before merging a file or overrides "
            "into it, as this package's tools do"
        )


def add_resnet_backbone_config(cfg):
    """Add this package's keys (with their defaults) to `cfg` in place; safe to call twice."""
    if "RESNET_BACKBONE_DATA" not in cfg:
        cfg.RESNET_BACKBONE_DATA = CN()
        # Check DATASETS.TRAIN and DATASETS.TEST before training starts (and before anything
        # is written to OUTPUT_DIR): missing/unreadable images, sizes differing from the
        # annotation, empty splits, duplicate COCO ids, unusable boxes
        # (resnet_backbone/data/validation.py). False skips the whole pass.
        cfg.RESNET_BACKBONE_DATA.VALIDATE = True
        # Read every image's header (PIL, no decoding) to find missing/unreadable files and
        # size mismatches; False skips this part for huge datasets on slow disks.
        cfg.RESNET_BACKBONE_DATA.READ_IMAGE_HEADERS = True
        # Boxes with zero/negative/non-finite area or entirely outside their image: "drop"
        # removes them from training and logs how many (with examples); "error" stops.
        cfg.RESNET_BACKBONE_DATA.BAD_BOXES = "drop"
        # Threads reading image headers.
        cfg.RESNET_BACKBONE_DATA.NUM_THREADS = 8
    if "RESNET_BACKBONE" in cfg.MODEL:
        return cfg
    cfg.MODEL.RESNET_BACKBONE = CN()
    # Paper Sec. 3.3 shortcut option: "A" = identity, zero-padded channels where they grow
    # (no parameters); "B" = 1x1 projection only where the shape changes (the paper's default
    # and Detectron2's); "C" = 1x1 projection on every block.
    cfg.MODEL.RESNET_BACKBONE.SHORTCUT = "B"
    # False builds the paper's "plain" counterpart: the same layers without any shortcut.
    cfg.MODEL.RESNET_BACKBONE.RESIDUAL = True
    # MODEL.WEIGHTS that leave weights of the backbone (or of a C4 head's res5) unfilled, absent
    # from the file or of another shape there, stop the run with the list of them (the file is
    # for another network); True trains from such a file anyway, with a warning. Applies to
    # every backbone of this package, VGG-16 included.
    cfg.MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS = False

    cfg.MODEL.VGG = CN()  # VGG-16, configuration "D" of Simonyan & Zisserman
    # Conv blocks to freeze, counted from the input: 2 freezes conv1_* and conv2_* as the
    # Faster R-CNN paper did; 0 trains everything.
    cfg.MODEL.VGG.FREEZE_AT = 2
    # Any of "conv1".."conv5" (the outputs of conv1_2 .. conv5_3, strides 1, 2, 4, 8, 16:
    # pool5 is dropped as in Faster R-CNN, so conv5_3 is the stride-16 feature map).
    cfg.MODEL.VGG.OUT_FEATURES = ["conv5"]

    cfg.MODEL.ROI_BOX_HEAD.VGG = CN()
    # fc6/fc7 width of the ImageNet classifier the head is initialised from.
    cfg.MODEL.ROI_BOX_HEAD.VGG.FC_DIM = 4096
    # Dropout after fc6 and fc7 as in the ImageNet classifier; 0 disables it.
    cfg.MODEL.ROI_BOX_HEAD.VGG.DROPOUT = 0.5

    # Your own datasets, {name: {FORMAT: "voc" | "coco", paths, CLASSES}}, registered from the
    # config in every process by tools/train_net.py (format: resnet_backbone/data/custom.py).
    cfg.DATASETS.USER = CN(new_allowed=True)

    # Divergence and recovery (resnet_backbone/engine/trainer.py). A run stops as soon as training
    # looks diverged, before that iteration's checkpoint is written, and points
    # OUTPUT_DIR/last_checkpoint at the newest checkpoint from before the divergence.
    cfg.RESNET_BACKBONE_SOLVER = CN()
    # Diverged when the total loss exceeds this multiple of the median loss of the last
    # LOSS_WINDOW iterations (the jump that comes before a non-finite loss) and the loss at
    # the start of training (noise on a tiny loss late in training is no divergence);
    # 0 disables.
    cfg.RESNET_BACKBONE_SOLVER.LOSS_SPIKE_FACTOR = 10.0
    # Iterations in that running median (checked from the 3rd iteration of a run on).
    cfg.RESNET_BACKBONE_SOLVER.LOSS_WINDOW = 20
    # Diverged when the L2 norm of all trainable weights grows past this multiple of its
    # value at the start of training; finite but huge weights are never saved then.
    # 0 disables.
    cfg.RESNET_BACKBONE_SOLVER.WEIGHT_NORM_GROWTH = 10.0
    # The weight norm (a host-device sync on GPUs) and, with several processes, the exchange of
    # stop requests (divergence, SIGTERM) between them run every CHECK_PERIOD iterations and
    # before every checkpoint; the loss check and a single process's SIGTERM act at once.
    cfg.RESNET_BACKBONE_SOLVER.CHECK_PERIOD = 20
    # With --resume: use the learning rates of this config (SOLVER.BASE_LR, BIAS_LR_FACTOR),
    # the schedule continuing at the resumed iteration, instead of those saved in the
    # checkpoint; e.g. a lower SOLVER.BASE_LR after a divergence.
    cfg.RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR = False
    # Iterations between writes of the training metrics (the log line, metrics.json,
    # TensorBoard) and after the last one; Detectron2's DefaultTrainer fixes 20. Lower it for
    # short runs, raise it to log less on long ones.
    cfg.RESNET_BACKBONE_SOLVER.WRITE_PERIOD = 20

    # The fast path (resnet_backbone/modeling/fast_path.py): switches that keep the model and its
    # checkpoints as they are; configs/Base-FastPath.yaml turns them on.
    cfg.MODEL.FAST_PATH = CN()
    # Apply FrozenBN (and, in eval mode, BN) through the preceding convolution's weight and
    # bias; exact up to float rounding, checkpoints keep the unfolded tensors and names.
    cfg.MODEL.FAST_PATH.FOLD_FROZEN_BN = False
    # Backbone and res5 head in the channels_last (NHWC) memory format.
    cfg.MODEL.FAST_PATH.CHANNELS_LAST = False
    # Backbone and res5 head under torch.autocast: "" (off), "bfloat16" (CPU and recent GPUs,
    # no loss scaling), "float16" (CUDA, with SOLVER.AMP.ENABLED for loss scaling).
    cfg.MODEL.FAST_PATH.AUTOCAST = ""
    # torch.compile (dynamic shapes) of the backbone and the res5 head; the first iterations
    # pay the compilation.
    cfg.MODEL.FAST_PATH.COMPILE = False
    return cfg
