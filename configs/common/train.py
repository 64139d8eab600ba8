"""`train`: Detectron2's configs/common/train.py keys (read by Detectron2's
tools/lazyconfig_train_net.py and by this project's), with the values of the YAML configs'
defaults, then this project's own run settings, which Detectron2's tool does not read:
`seed` (SEED; Detectron2's default_setup reads train.seed too), the divergence checks of
RESNET_BACKBONE_SOLVER (lower-case names) and MODEL.FAST_PATH (`fast_path`)."""
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=0,
    log_period=20,
    device="cuda",
    seed=-1,
    loss_spike_factor=10.0,
    loss_window=20,
    weight_norm_growth=10.0,
    check_period=20,
    resume_with_config_lr=False,
    fast_path=dict(fold_frozen_bn=False, channels_last=False, autocast="", compile=False),
)
