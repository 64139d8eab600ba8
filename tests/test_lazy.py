"""LazyConfig twins of the YAML configs (configs/**/*.py, resnet_backbone/engine/lazy.py): the same
network (parameter names, shapes, outputs on the same weights), the same run settings, and
training / resuming through tools/lazyconfig_train_net.py."""
import json

import pytest
import torch
import yaml
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.modeling.backbone import BottleneckBlock
from omegaconf import OmegaConf

from conftest import fast_subset
from resnet_backbone.engine import lazy
from resnet_backbone.modeling.description import describe
from resnet_backbone.engine.startup import model_skeleton
from resnet_backbone.model_zoo import config_root, get_config

TABLE_ROWS = [f"{task}/{net}_{data}" for net in ("vgg16", "resnet101_c4")
              for task, data in (("PascalVOC-Detection", "voc0712"),
                                 ("PascalVOC-Detection", "voc07pp12"),
                                 ("COCO-Detection", "coco2014"))]
DEMO = "Demo/resnet18_c4_synthetic"
# Every lazy leaf (configs/<task>/*.py, each beside its YAML twin).
LEAVES = sorted(str(path.relative_to(config_root()).with_suffix("")) for path in
                config_root().glob("*/*.py") if path.parent.name != "common")
LAZY_TRAIN_NET = config_root().parent / "tools" / "lazyconfig_train_net.py"


def load_lazy(name, *overrides):
    return lazy.load(str(config_root() / f"{name}.py"), overrides)


def models(lazy_name, yaml_name, lazy_overrides=(), yaml_overrides=()):
    """(YAML model, lazy model), both on CPU in eval mode, the lazy one with the YAML one's
    weights."""
    cfg = get_config(f"{yaml_name}.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *yaml_overrides])
    torch.manual_seed(0)
    yaml_model = build_model(cfg).eval()
    lazy_model = instantiate(load_lazy(lazy_name, *lazy_overrides).model).eval()
    return yaml_model, lazy_model


def check_same_network(yaml_model, lazy_model):
    expected = {k: v.shape for k, v in yaml_model.state_dict().items()}
    assert {k: v.shape for k, v in lazy_model.state_dict().items()} == expected
    lazy_model.load_state_dict(yaml_model.state_dict())
    torch.manual_seed(0)
    batch = [{"image": torch.rand(3, 96, 128) * 255}]
    with torch.no_grad():
        images = [m.preprocess_image(batch) for m in (yaml_model, lazy_model)]
        features = [m.backbone(i.tensor) for m, i in zip((yaml_model, lazy_model), images)]
        proposals = [m.proposal_generator(i, f)[0][0] for m, i, f in
                     zip((yaml_model, lazy_model), images, features)]
        outputs = [m(batch)[0]["instances"] for m in (yaml_model, lazy_model)]
    for name in features[0]:
        torch.testing.assert_close(features[1][name], features[0][name])
    torch.testing.assert_close(proposals[1].proposal_boxes.tensor,
                               proposals[0].proposal_boxes.tensor)
    torch.testing.assert_close(outputs[1].pred_boxes.tensor, outputs[0].pred_boxes.tensor)
    torch.testing.assert_close(outputs[1].scores, outputs[0].scores)
    assert torch.equal(outputs[1].pred_classes, outputs[0].pred_classes)
    # Random deep nets with FrozenBN (an identity here) overflow into no proposals at all, so
    # only the demo's BN networks are known to compare non-empty proposals.
    return len(proposals[0])


@pytest.mark.parametrize("lazy_overrides, yaml_name", [
    ((), DEMO),
    (("model.backbone.residual=False",), "Demo/plain18_c4_synthetic"),
])
def test_demo_network_matches_yaml(lazy_overrides, yaml_name):
    assert check_same_network(*models(DEMO, yaml_name, lazy_overrides)) > 0


@pytest.mark.parametrize("depth, shortcut", fast_subset([(34, "A"), (50, "C")], fast=[(34, "A")]))
def test_depth_and_shortcut_are_plain_fields(depth, shortcut):
    """One override of model.backbone reaches the RPN head, res5 and the box predictor."""
    check_same_network(*models(
        DEMO, DEMO, (f"model.backbone.depth={depth}", f"model.backbone.shortcut={shortcut}",
                     "model.backbone.res2_out_channels=null"),
        ("MODEL.RESNETS.DEPTH", depth, "MODEL.RESNET_BACKBONE.SHORTCUT", shortcut,
         "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256)))


@pytest.mark.slow
@pytest.mark.parametrize("name", TABLE_ROWS)
def test_table_network_matches_yaml(name):
    check_same_network(*models(name, name))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PascalVOC-Detection/resnet50_fpn_voc0712",
                                  "PascalVOC-Detection/plain34_c4_scratch_voc0712",
                                  "PascalVOC-Detection/resnet18_c4_voc0712"])
def test_other_leaves_networks_match_yaml(name):
    """The FPN leaf, a from-scratch plain leaf (SyncBN, nothing frozen: its norm layers in eval
    mode give one process's BN) and a torchvision-format leaf."""
    check_same_network(*models(name, name))


def test_every_detection_yaml_leaf_has_a_lazy_twin():
    yaml_leaves = {str(path.relative_to(config_root()).with_suffix("")) for task in
                   ("PascalVOC-Detection", "COCO-Detection", "Demo")
                   for path in (config_root() / task).glob("*.yaml")
                   if not path.name.startswith("Base-")}
    assert yaml_leaves == set(LEAVES)


# YAML key -> where the lazy config (Detectron2's schema) holds it.
RUN_SETTINGS = {
    "SOLVER.IMS_PER_BATCH": "dataloader.train.total_batch_size",
    "SOLVER.BASE_LR": "optimizer.lr",
    "SOLVER.MOMENTUM": "optimizer.momentum",
    "SOLVER.WEIGHT_DECAY": "optimizer.weight_decay",
    "SOLVER.WEIGHT_DECAY_NORM": "optimizer.params.weight_decay_norm",
    "SOLVER.STEPS": "lr_multiplier.scheduler.milestones",
    "SOLVER.MAX_ITER": "train.max_iter",
    "SOLVER.WARMUP_FACTOR": "lr_multiplier.warmup_factor",
    "SOLVER.WARMUP_METHOD": "lr_multiplier.warmup_method",
    "SOLVER.CHECKPOINT_PERIOD": "train.checkpointer.period",
    "INPUT.MIN_SIZE_TRAIN": "dataloader.train.mapper.augmentations.0.short_edge_length",
    "INPUT.MAX_SIZE_TRAIN": "dataloader.train.mapper.augmentations.0.max_size",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "dataloader.train.mapper.augmentations.0.sample_style",
    "INPUT.MIN_SIZE_TEST": "dataloader.test.mapper.augmentations.0.short_edge_length",
    "INPUT.MAX_SIZE_TEST": "dataloader.test.mapper.augmentations.0.max_size",
    "INPUT.FORMAT": "dataloader.train.mapper.image_format",
    "DATASETS.TRAIN": "dataloader.train.dataset.names",
    "DATALOADER.NUM_WORKERS": "dataloader.train.num_workers",
    "MODEL.PIXEL_MEAN": "model.pixel_mean",
    "MODEL.PIXEL_STD": "model.pixel_std",
    "MODEL.WEIGHTS": "train.init_checkpoint",
    "MODEL.DEVICE": "train.device",
    "MODEL.ROI_HEADS.NUM_CLASSES": "model.roi_heads.num_classes",
    "TEST.EVAL_PERIOD": "train.eval_period",
    "SEED": "train.seed",
    **{f"RESNET_BACKBONE_SOLVER.{key.upper()}": f"train.{key}" for key in (
        "loss_spike_factor", "loss_window", "weight_norm_growth", "check_period",
        "resume_with_config_lr")},
    "RESNET_BACKBONE_SOLVER.WRITE_PERIOD": "train.log_period",
    **{f"MODEL.FAST_PATH.{key.upper()}": f"train.fast_path.{key}" for key in (
        "fold_frozen_bn", "channels_last", "autocast", "compile")},
}
# Of those, the ones the engine's hooks and checks read (lazy.engine_config derives them).
ENGINE_SETTINGS = [key for key in RUN_SETTINGS if not key.startswith(("SOLVER.", "INPUT."))] + [
    "SOLVER.IMS_PER_BATCH", "SOLVER.MAX_ITER", "SOLVER.CHECKPOINT_PERIOD", "INPUT.FORMAT",
    "DATASETS.TEST", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD"]


def _yacs(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return list(cfg) if isinstance(cfg, (list, tuple)) else cfg


@pytest.mark.parametrize("name", LEAVES)
def test_run_settings_match_yaml(name):
    """The YAML twin's run settings, read where Detectron2's schema keeps them (declared
    values, interpolations resolved); the engine config derived from the lazy one agrees."""
    config, twin = load_lazy(name), get_config(f"{name}.yaml")
    for key, where in RUN_SETTINGS.items():
        ours = OmegaConf.select(config, where, throw_on_missing=True)
        ours = OmegaConf.to_object(ours) if OmegaConf.is_config(ours) else ours
        assert ours == _yacs(twin, key) or [ours] == _yacs(twin, key), (key, where)
    assert [config.dataloader.test.dataset.names] == list(twin.DATASETS.TEST)
    assert config.dataloader.test.mapper.image_format == twin.INPUT.FORMAT
    schedule = config.lr_multiplier
    assert schedule.scheduler.num_updates == twin.SOLVER.MAX_ITER
    assert round(schedule.warmup_length * twin.SOLVER.MAX_ITER) == twin.SOLVER.WARMUP_ITERS
    assert list(schedule.scheduler["values"]) == [
        twin.SOLVER.GAMMA ** k for k in range(len(twin.SOLVER.STEPS) + 1)]
    assert twin.INPUT.RANDOM_FLIP == "horizontal"
    assert config.dataloader.train.mapper.augmentations[1].horizontal
    engine = lazy.engine_config(config)
    for key in ENGINE_SETTINGS:
        assert _yacs(engine, key) == _yacs(twin, key), key


@pytest.mark.parametrize("name", LEAVES)
def test_the_twins_record_the_same_network(name):
    """What a checkpoint records is read from the network built (description.describe): the
    YAML and lazy twins build networks with the same description and pixel format, and so
    record the same metadata."""
    twin = get_config(f"{name}.yaml")
    yaml_network = model_skeleton(twin)
    with torch.device("meta"):
        lazy_network = instantiate(load_lazy(name).model)
    assert describe(lazy_network.backbone) == describe(yaml_network.backbone) is not None
    assert lazy_network.input_format == twin.INPUT.FORMAT


SCHEMA = {"model", "dataloader", "optimizer", "lr_multiplier", "train"}
D2_TRAIN_KEYS = {"output_dir", "init_checkpoint", "max_iter", "amp", "ddp", "checkpointer",
                 "eval_period", "log_period", "device"}


@pytest.mark.parametrize("name", LEAVES)
def test_leaf_is_detectron2_schema_and_leaks_no_names(name):
    config = load_lazy(name)
    assert set(config) == SCHEMA
    assert set(config.dataloader) == {"train", "test", "evaluator"}
    assert D2_TRAIN_KEYS <= set(config.train)


@pytest.mark.parametrize("name", LEAVES)
def test_save_and_load_again(name, tmp_path):
    """The saved lazy config is plain YAML (callables by their public names), loads again
    as the same config and builds the same network."""
    config, path = load_lazy(name), tmp_path / "lazy_config.yaml"
    lazy.save_lazy_config(config, path)
    text = path.read_text()
    assert "!!python" not in text and isinstance(yaml.safe_load(text), dict)
    assert "_target_: resnet_backbone.make_" in text
    assert not any(f"_target_: resnet_backbone.{m}." in text for m in ("resnet", "vgg", "fpn"))
    again = lazy.load(str(path))
    lazy.save_lazy_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == text
    assert lazy.engine_config(again).dump() == lazy.engine_config(config).dump()
    with torch.device("meta"):
        shapes = [{k: v.shape for k, v in instantiate(c.model).state_dict().items()}
                  for c in (config, again)]
    assert shapes[0] == shapes[1]


def test_saving_keeps_other_callables_loadable(tmp_path):
    """A callable that is not a _target_ (as Detectron2's res5 `block_class`) is saved as a
    LazyCall of pydoc.locate, which instantiates to it."""
    config = load_lazy(DEMO)
    config.model.roi_heads.res5.block_class = BottleneckBlock
    lazy.save_lazy_config(config, tmp_path / "saved.yaml")
    again = lazy.load(str(tmp_path / "saved.yaml"))
    assert instantiate(again.model.roi_heads.res5.block_class) is BottleneckBlock


def test_overrides_are_honoured():
    config = load_lazy(DEMO, "train.max_iter=3", "optimizer.lr=0.001")
    cfg = lazy.engine_config(config)
    assert cfg.SOLVER.MAX_ITER == 3
    optimizer = lazy.lazy_trainer(config).build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert {group["lr"] for group in optimizer.param_groups} == {0.001}
    assert "model" not in config.optimizer.params  # the config stays data


@pytest.mark.parametrize("override, nearest", [("schedule.max_itr=1", "train.max_iter"),
                                               ("train.max_itr=1", "train.max_iter"),
                                               ("optimizer.lr_=0.1", "optimizer.lr")])
def test_override_of_a_missing_key_is_refused(override, nearest):
    with pytest.raises(KeyError, match=rf"{override.split('=')[0]} is not a key.*{nearest}"):
        load_lazy(DEMO, override)


def test_unknown_train_key_is_refused():
    config = load_lazy(DEMO)
    config.train.max_itr = 1
    with pytest.raises(KeyError, match="train.max_itr .*train.max_iter"):
        lazy.engine_config(config)


def test_train_setting_the_engine_cannot_honour_is_refused():
    config = load_lazy(DEMO, "train.ddp.find_unused_parameters=True")
    with pytest.raises(ValueError, match="train.ddp.find_unused_parameters"):
        lazy.engine_config(config)


def test_mapper_and_model_pixel_formats_must_agree():
    config = load_lazy(DEMO, "dataloader.train.mapper.image_format=BGR")
    with pytest.raises(ValueError, match="dataloader.train.mapper.image_format=BGR"):
        lazy.engine_config(config)


def test_missing_key_is_named():
    config = load_lazy(DEMO)
    del config.train["max_iter"]
    with pytest.raises(KeyError, match="train.max_iter"):
        lazy.engine_config(config)


LAZY_TINY = ("train.max_iter=2", "dataloader.train.total_batch_size=2",
             "dataloader.train.mapper.augmentations.0.short_edge_length=[96]",
             "dataloader.test.mapper.augmentations.0.short_edge_length=96",
             "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
             "model.roi_heads.batch_size_per_image=16",
             "model.proposal_generator.post_nms_topk=[200,20]", "train.seed=1")


@pytest.mark.slow  # starts tools/lazyconfig_train_net.py
def test_bad_weights_stop_before_output_dir(train_net, tmp_path):
    out = tmp_path / "out"
    result = train_net(*LAZY_TINY, f"train.output_dir={out}",
                       f"train.init_checkpoint={tmp_path / 'missing.pth'}",
                       config=config_root() / f"{DEMO}.py", script=LAZY_TRAIN_NET)
    assert result.returncode != 0
    assert "train.init_checkpoint" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_train_then_resume(train_net, tmp_path):
    out, config = tmp_path / "out", config_root() / f"{DEMO}.py"
    args = (*LAZY_TINY, f"train.output_dir={out}", "train.checkpointer.period=1")
    first = train_net(*args, config=config, script=LAZY_TRAIN_NET)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "model_final.pth").exists() and (out / "lazy_config.yaml").exists()
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert "bbox" in metrics["synthetic_shapes_val"]
    resumed = train_net("--resume", *args, "train.max_iter=3", config=config,
                        script=LAZY_TRAIN_NET)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert "iteration 2" in resumed.stderr + resumed.stdout


@pytest.mark.slow  # starts tools/lazyconfig_train_net.py (as test_bad_config.py's YAML twin does)
def test_syncbn_under_several_cpu_processes_is_refused_before_output_dir(train_net, tmp_path):
    """The lazy backbone's norm reaches the engine's start-up checks (MODEL.RESNETS.NORM)."""
    out = tmp_path / "out"
    result = train_net("--num-gpus", "2", *LAZY_TINY, f"train.output_dir={out}",
                       "model.backbone.norm=SyncBN", config=config_root() / f"{DEMO}.py",
                       script=LAZY_TRAIN_NET)
    assert result.returncode != 0
    assert "SyncBN" in result.stderr and not out.exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes(train_net, tmp_path):
    out = tmp_path / "out"
    result = train_net("--num-gpus", "2", "--dist-url", "auto", *LAZY_TINY,
                       "dataloader.train.total_batch_size=4", f"train.output_dir={out}",
                       config=config_root() / f"{DEMO}.py", script=LAZY_TRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "World size: 2" in (out / "log.txt").read_text()
    assert "bbox" in json.loads((out / "final_metrics.json").read_text())["synthetic_shapes_val"]


@pytest.mark.slow
def test_overrides_reach_the_run(train_net, tmp_path):
    """`train.max_iter=3 optimizer.lr=0.001`: the run stops after 3 iterations at lr 0.001."""
    out = tmp_path / "out"
    result = train_net(*LAZY_TINY, f"train.output_dir={out}", "train.max_iter=3",
                       "optimizer.lr=0.001", "train.log_period=1",
                       config=config_root() / f"{DEMO}.py", script=LAZY_TRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert max(row["iteration"] for row in rows if "lr" in row) == 2
    assert max(row["lr"] for row in rows if "lr" in row) == pytest.approx(0.001)


def detectron2_lazy_tool():
    """Detectron2's own tools/lazyconfig_train_net.py, from the pb1-detectron2 0.6 source archive
    tools/install_detectron2.py keeps (never downloaded here)."""
    import tarfile
    archive = config_root().parent / "build" / "install_detectron2" / "pb1-detectron2-0.6.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not on this machine (tools/install_detectron2.py keeps it "
                    "when it installs Detectron2 from the archive)")
    with tarfile.open(archive) as tar:
        return tar.extractfile("pb1-detectron2-0.6/tools/lazyconfig_train_net.py").read().decode()


@pytest.mark.slow
def test_detectron2_lazy_tool_trains_and_evaluates_a_project_config(train_net, tmp_path):
    """Detectron2's tools/lazyconfig_train_net.py with `import resnet_backbone` added."""
    script = tmp_path / "lazyconfig_train_net.py"
    script.write_text("import resnet_backbone  # noqa: F401\n" + detectron2_lazy_tool())
    out = tmp_path / "out"
    result = train_net(*LAZY_TINY, f"train.output_dir={out}",
                       config=config_root() / f"{DEMO}.py", script=script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model_final.pth").exists()
    assert "copypaste: Task: bbox" in result.stderr + result.stdout


# Detectron2's model-zoo Faster R-CNN C4 (its mask_rcnn_c4 model without the mask head, its
# coco data, optimizer, 1x schedule and train) with the project's ResNet-50 as model.backbone,
# on the synthetic shapes; BN rather than FrozenBN as it trains from scratch.
DETECTRON2_C4 = """
from detectron2.config import LazyCall as L, LazyConfig
from detectron2.model_zoo import get_config_file

from resnet_backbone import make_resnet

_zoo = LazyConfig.load(get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py"))
model, dataloader, optimizer = _zoo.model, _zoo.dataloader, _zoo.optimizer
lr_multiplier, train = _zoo.lr_multiplier, _zoo.train

model.backbone = L(make_resnet)(depth=50, norm="BN", out_features=["res4"], freeze_at=0)
model.roi_heads.update(mask_head=None, num_classes=5, batch_size_per_image=16)
model.roi_heads.res5.norm = "BN"
model.proposal_generator.post_nms_topk = (100, 20)
dataloader.train.dataset.names = "synthetic_shapes_train"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.mapper.augmentations[0].update(short_edge_length=[96], max_size=160)
dataloader.train.update(total_batch_size=2, num_workers=0)
dataloader.test.dataset.names = "synthetic_shapes_val"
dataloader.test.mapper.augmentations[0].update(short_edge_length=96, max_size=160)
dataloader.test.num_workers = 0
train.update(init_checkpoint="", device="cpu", max_iter=2, seed=0)
"""


@pytest.mark.slow
def test_project_lazy_tool_runs_a_detectron2_config(train_net, tmp_path):
    config = tmp_path / "faster_rcnn_R_50_C4_synthetic.py"
    config.write_text(DETECTRON2_C4)
    out = tmp_path / "out"
    result = train_net(f"train.output_dir={out}", config=config, script=LAZY_TRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model_final.pth").exists() and (out / "lazy_config.yaml").exists()
    assert "bbox" in json.loads((out / "final_metrics.json").read_text())["synthetic_shapes_val"]
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert max(row["iteration"] for row in rows if "total_loss" in row) == 1


@pytest.mark.slow
def test_a_detectron2_res5_after_resnet18_stops_at_start_up(train_net, tmp_path):
    """The wrong-head guard on the lazy route: Detectron2's bottleneck res5 cannot continue a
    ResNet-18; the run stops before OUTPUT_DIR is touched, naming the field to change."""
    config = tmp_path / "faster_rcnn_R_18_C4_synthetic.py"
    config.write_text(DETECTRON2_C4)
    out = tmp_path / "out"
    result = train_net(f"train.output_dir={out}", "model.backbone.depth=18", config=config,
                       script=LAZY_TRAIN_NET)
    assert result.returncode != 0
    assert "model.roi_heads.res5" in result.stderr and "make_res5" in result.stderr
    assert not out.exists()
