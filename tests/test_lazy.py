"""LazyConfig twins of the YAML configs (configs/**/*.py, resnet_backbone/lazy.py): the same
network (parameter names, shapes, outputs on the same weights), the same run settings, and
training / resuming through tools/lazyconfig_train_net.py."""
import json

import pytest
import torch
from detectron2.config import instantiate
from detectron2.modeling import build_model

from conftest import fast_subset
from resnet_backbone import lazy
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


@pytest.mark.parametrize("name", LEAVES)
def test_run_settings_match_yaml(name):
    engine, twin = lazy.engine_config(load_lazy(name)), get_config(f"{name}.yaml")
    keys = [k for k in lazy.RUN_KEYS.values() if k != "OUTPUT_DIR"] + [
        "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEPTH", "MODEL.RESNETS.STRIDE_IN_1X1",
        "MODEL.RESNET_BACKBONE.RESIDUAL", "MODEL.RESNET_BACKBONE.SHORTCUT",
        "MODEL.RESNETS.NORM", "MODEL.RESNETS.RES2_OUT_CHANNELS", "MODEL.BACKBONE.FREEZE_AT",
        "MODEL.VGG.FREEZE_AT"]
    for key in keys:
        ours, theirs = engine, twin
        for part in key.split("."):
            ours, theirs = ours[part], theirs[part]
        if isinstance(theirs, (list, tuple)):
            ours, theirs = list(ours), list(theirs)
        assert ours == theirs, key


def test_missing_key_is_named():
    config = load_lazy(DEMO)
    del config.schedule["max_iter"]
    with pytest.raises(KeyError, match="schedule.max_iter"):
        lazy.engine_config(config)


LAZY_TINY = ("schedule.max_iter=2", "schedule.ims_per_batch=2", "schedule.warmup_iters=1",
             "schedule.steps=[1]", "dataloader.train.min_size=[96]", "dataloader.test.min_size=96",
             "dataloader.train.num_workers=0", "model.roi_heads.batch_size_per_image=16",
             "model.proposal_generator.post_nms_topk=[200,20]", "train.seed=1")


@pytest.mark.slow  # starts tools/lazyconfig_train_net.py
def test_bad_weights_stop_before_output_dir(train_net, tmp_path):
    out = tmp_path / "out"
    result = train_net(*LAZY_TINY, f"train.output_dir={out}",
                       f"train.init_checkpoint={tmp_path / 'missing.pth'}",
                       config=config_root() / f"{DEMO}.py", script=LAZY_TRAIN_NET)
    assert result.returncode != 0
    assert "MODEL.WEIGHTS" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_train_then_resume(train_net, tmp_path):
    out, config = tmp_path / "out", config_root() / f"{DEMO}.py"
    args = (*LAZY_TINY, f"train.output_dir={out}", "schedule.checkpoint_period=1")
    first = train_net(*args, config=config, script=LAZY_TRAIN_NET)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "model_final.pth").exists() and (out / "lazy_config.yaml").exists()
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert "bbox" in metrics["synthetic_shapes_val"]
    resumed = train_net("--resume", *args, "schedule.max_iter=3", config=config,
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
                       "schedule.ims_per_batch=4", f"train.output_dir={out}",
                       config=config_root() / f"{DEMO}.py", script=LAZY_TRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "World size: 2" in (out / "log.txt").read_text()
    assert "bbox" in json.loads((out / "final_metrics.json").read_text())["synthetic_shapes_val"]
