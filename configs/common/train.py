"""Run settings of tools/lazyconfig_train_net.py (Detectron2's `train` names); `engine` sets
other keys of the engine's yacs config, e.g. {"RESNET_BACKBONE_SOLVER.WRITE_PERIOD": 20}."""
train = dict(
    output_dir="./output",
    init_checkpoint="",
    device="cuda",
    eval_period=0,
    seed=-1,
    engine={},
)
