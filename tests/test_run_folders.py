"""A lazy run's folder serves every tool as a YAML run's does: --eval-only (through either tool
name), predict, export and analysis rebuild the network the run trained, a non-default
architecture option included, and every checkpoint records that option."""
import sys

import pytest
import torch
from detectron2.config import instantiate

from conftest import REPO
from resnet_backbone import inference, runs
from resnet_backbone.engine import lazy
from resnet_backbone.weights.checkpoint import read_metadata
from resnet_backbone.model_zoo import get_config_file
from resnet_backbone.weights.safe_load import read_checkpoint

sys.path.insert(0, str(REPO / "tools"))
import analyze_model  # noqa: E402  (tools/analyze_model.py)
import export_model  # noqa: E402  (tools/export_model.py)

DEMO_LAZY = "Demo/resnet18_c4_synthetic.py"
TINY = ("train.max_iter=3", "dataloader.train.total_batch_size=2",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[96]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=96",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "model.roi_heads.batch_size_per_image=16", "train.checkpointer.period=1",
        "model.proposal_generator.post_nms_topk=[200,20]", "train.seed=1")
# Not the demo's: shortcut option C (a projection on every block).
ARCHITECTURE = ("model.backbone.shortcut=C",)


@pytest.fixture(scope="module")
def lazy_run(train_net, tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy_run") / "out"
    result = train_net(*TINY, *ARCHITECTURE, f"train.output_dir={out}",
                       config=get_config_file(DEMO_LAZY),
                       script=REPO / "tools" / "lazyconfig_train_net.py")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_checkpoint_records_the_architecture_built(lazy_run):
    checkpoints = sorted(lazy_run.glob("model_*.pth"))
    assert len(checkpoints) >= 3
    for path in checkpoints:
        assert read_metadata(str(path))["shortcut"] == "C", path.name


@pytest.mark.slow
def test_predict_from_the_folder_rebuilds_the_trained_model(lazy_run, datasets_dir,
                                                            monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_dir))
    run = runs.load_model_run(str(lazy_run), ["train.device=cpu"])
    assert run.weights == str(lazy_run / "model_final.pth")
    predictor = inference.make_predictor(run)
    # The model at the end of training: the shipped config with the run's overrides, and the
    # final weights.
    trained = instantiate(lazy.load(DEMO_LAZY, [*TINY, *ARCHITECTURE, "train.device=cpu"]).model)
    trained.load_state_dict(read_checkpoint(str(lazy_run / "model_final.pth"))["model"])
    trained.eval()
    image = torch.randint(0, 256, (96, 128, 3), dtype=torch.uint8).numpy()
    reference = inference.Predictor(trained, run.test_augmentations(), run.input_format)
    expected, actual = reference(image)["instances"], predictor(image)["instances"]
    torch.testing.assert_close(actual.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(actual.scores, expected.scores)
    # the shipped config alone (shortcut B) cannot take these weights
    with pytest.raises(ValueError, match="shortcut"):
        runs.load_model_run(DEMO_LAZY, ["train.device=cpu",
                                        f"train.init_checkpoint={lazy_run / 'model_final.pth'}"]
                            ).check_weights()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_net.py", "lazyconfig_train_net.py"])
def test_eval_only_from_the_folder(lazy_run, train_net, script):
    result = train_net("--eval-only", config=lazy_run, script=REPO / "tools" / script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model_final.pth" in result.stderr + result.stdout


@pytest.mark.slow
def test_export_and_analysis_from_the_folder(lazy_run, datasets_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_dir))
    exported = tmp_path / "exported"
    assert export_model.main(["--config-file", str(lazy_run), "--output", str(exported),
                              "train.device=cpu"]) == str(exported / "model.ts")
    results = analyze_model.main(["--config-file", str(lazy_run), "--tasks", "parameter",
                                  "flop", "-n", "1", "train.device=cpu"])
    assert results["parameter"]["total"] == sum(
        p.numel() for p in runs.load_model_run(str(lazy_run), ["train.device=cpu"])
        .build_model().parameters())
