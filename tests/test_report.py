"""tools/report.py: fake finished runs give the paper table's rows, differences and a PNG."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from resnet_backbone.engine.trainer import FINAL_METRICS

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import report  # noqa: E402  (tools/report.py)
from paper_results import CLASSIFICATION_RESULTS, DETECTION_RESULTS  # noqa: E402


def fake_run(root, name, backbone, depth, metrics, residual=True):
    run = root / name
    run.mkdir()
    cfg = {"MODEL": {"BACKBONE": {"NAME": backbone}, "RESNETS": {"DEPTH": depth},
                     "RESNET_BACKBONE": {"RESIDUAL": residual}}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / FINAL_METRICS).write_text(json.dumps(metrics))
    return str(run)


@pytest.fixture
def runs(tmp_path):
    return [
        fake_run(tmp_path, "r101_voc", "build_paper_resnet_backbone", 101,
                 {"voc_2007_test": {"bbox": {"AP": 50.0, "AP50": 77.0, "AP75": 55.0}}}),
        fake_run(tmp_path, "vgg_coco", "build_vgg16_backbone", 16,
                 {"coco_2014_val": {"bbox": {"AP": 20.0, "AP50": 42.0}}}),
        fake_run(tmp_path, "plain_demo", "build_paper_resnet_backbone", 18,
                 {"synthetic_shapes_val": {"bbox": {"AP": 60.0, "AP50": 85.5, "AP-circle": 1.0},
                                           "bbox_voc07": {"AP50": 84.0}}}, residual=False),
    ]


def test_rows_follow_the_paper_tables(runs):
    rows = report.build_rows(runs)
    by_key = {(r.setting, r.architecture): r for r in rows}
    r101 = by_key[("VOC 07+12 → VOC 07 test, mAP", "ResNet-101")]
    assert (r101.paper, r101.ours) == (76.4, 77.0)
    assert r101.difference == pytest.approx(0.6)
    vgg_ap = by_key[("COCO train → val, mAP@[.5,.95]", "VGG-16")]
    assert (vgg_ap.paper, vgg_ap.ours) == (21.2, 20.0)
    assert by_key[("COCO train → val, mAP@.5", "VGG-16")].ours == 42.0
    # every paper number appears exactly once, run or not
    paper_rows = [r for r in rows if r.paper is not None]
    assert len(paper_rows) == sum(len(v[2]) for v in DETECTION_RESULTS.values())
    not_run = by_key[("COCO train → val, mAP@.5", "ResNet-101")]
    assert not_run.run is None and not_run.ours is None and not_run.paper == 48.4
    demo = [r for r in rows if r.architecture == "Plain-18"]
    assert {r.setting: r.ours for r in demo} == {
        "synthetic_shapes_val, AP": 60.0, "synthetic_shapes_val, AP50": 85.5,
        "synthetic_shapes_val, bbox_voc07/AP50": 84.0,
    }


def cells(line):
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_layout(runs):
    lines = report.to_markdown(report.build_rows(runs)).splitlines()
    assert cells(lines[0]) == [
        "table", "train → test, metric", "backbone", "paper", "ours", "ours − paper", "run",
    ]
    rows = [cells(line) for line in lines[2:]]
    assert ["Table 7", "VOC 07+12 → VOC 07 test, mAP", "ResNet-101", "76.4", "77.0", "+0.6",
            runs[0]] in rows
    assert ["Table 8", "COCO train → val, mAP@.5", "ResNet-101", "48.4", "—", "—",
            "not run"] in rows
    assert all(len(row) == 7 for row in rows)


@pytest.mark.slow
def test_cli_writes_markdown_and_chart(runs, tmp_path):
    out_md, out_png = tmp_path / "report.md", tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(TOOLS / "report.py"), *runs,
         "--markdown", str(out_md), "--chart", str(out_png)],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    printed = [cells(line) for line in result.stdout.splitlines() if line.startswith("|")]
    assert ["Table 8", "COCO train → val, mAP@.5", "VGG-16", "41.5", "42.0", "+0.5",
            runs[1]] in printed
    assert out_md.read_text() == "# Results against the paper\n\n" + report.to_markdown(
        report.build_rows(runs))
    assert Image.open(out_png).size[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["report.md",
                                                                        "report.png"]


def test_training_losses_of_a_resumed_run(runs):
    lines = [{"iteration": 19, "total_loss": 3.0, "lr": 0.01}, {"iteration": 39, "total_loss": 2.0},
             {"bbox/AP": 1.0, "iteration": 39},  # an evaluation, no loss
             {"iteration": 39, "total_loss": 2.5}]  # logged again after a resume
    Path(runs[0], "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert report.training_losses(runs[0]) == {19: 3.0, 39: 2.5}
    assert report.training_losses(runs[1]) == {}


def test_unfinished_run_is_named(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="half"):
        report.build_rows([str(tmp_path / "half")])


def fake_classifier_run(root, name, depth, metrics, *, residual=True, shortcut="A",
                        test_mode="full", backbone="build_cifar_resnet_backbone", log=(),
                        ten_crop_region="square"):
    run = Path(fake_run(root, name, backbone, depth, metrics, residual=residual))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["MODEL"]["RESNET_BACKBONE"]["SHORTCUT"] = shortcut
    cfg["MODEL"]["CLASSIFIER"] = {"TEST_MODE": test_mode, "TEN_CROP_REGION": ten_crop_region}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in log))
    return str(run)


def errors(top1, top5=0.0):
    return {"classification": {"top1_err": top1, "top5_err": top5, "num_images": 10}}


@pytest.fixture
def classifier_runs(tmp_path):
    log = [{"iteration": 19, "total_loss": 1.5, "train_top1_err": 60.0},
           {"iteration": 39, "train_top1_err": 40.0, "classification/top1_err": 45.0}]
    return [
        fake_classifier_run(tmp_path, "r56", 56, {"cifar10_test": errors(7.5)}, log=log),
        fake_classifier_run(tmp_path, "r50", 50, {"imagenet_val": errors(23.0, 7.0)},
                            shortcut="B", test_mode="10crop",
                            backbone="build_paper_resnet_backbone"),
        fake_classifier_run(tmp_path, "p56", 56, {"synthetic_shapes_cls_val": errors(12.5)},
                            residual=False, log=log),
    ]


def test_classification_rows_follow_tables_2_3_4_and_6(classifier_runs):
    rows = report.build_rows(classifier_runs)
    assert all(r.task == "classification" for r in rows)
    by_key = {(r.table, r.setting, r.architecture): r for r in rows}
    cifar = by_key[("Table 6", "CIFAR-10 test err", "ResNet-56 A")]
    assert (cifar.paper, cifar.ours, cifar.run) == (6.97, 7.5, classifier_runs[0])
    assert cifar.difference == pytest.approx(0.53)
    top5 = by_key[("Table 3", "ImageNet val, 10-crop, top-5 err", "ResNet-50 B")]
    assert (top5.paper, top5.ours) == (6.71, 7.0)
    # a 10-crop run is not a multi-scale one: Table 4's ResNet-50 row stays "not run"
    multiscale = by_key[("Table 4", "ImageNet val, single model multi-scale, top-1 err",
                         "ResNet-50 B")]
    assert multiscale.run is None and multiscale.paper == 20.74
    synthetic = [r for r in rows if r.architecture == "Plain-56"]
    assert {r.setting: (r.ours, r.paper) for r in synthetic} == {
        "synthetic_shapes_cls_val (full), top-1 err": (12.5, None),
        "synthetic_shapes_cls_val (full), top-5 err": (0.0, None),
    }
    # every paper number once; no detection rows without a detection run
    paper_rows = [r for r in rows if r.paper is not None]
    assert len(paper_rows) == sum(len(t[3]) for ts in CLASSIFICATION_RESULTS.values()
                                  for t in ts)


def test_markdown_has_one_table_per_task(runs, classifier_runs):
    text = report.to_markdown(report.build_rows(runs + classifier_runs))
    detection, classification = text.strip().split("\n\n")
    assert cells(detection.splitlines()[0])[1] == "train → test, metric"
    lines = classification.splitlines()
    assert cells(lines[0]) == ["table", "test set, metric", "network", "paper (%)", "ours (%)",
                               "ours − paper", "run"]
    assert ["Table 6", "CIFAR-10 test err", "ResNet-56 A", "6.97", "7.50", "+0.53",
            classifier_runs[0]] in [cells(line) for line in lines[2:]]


def test_error_curves_and_chart_of_classifier_runs(classifier_runs):
    train, test = report.error_curves(classifier_runs[0])
    assert (train, test) == ({19: 60.0, 39: 40.0}, {39: 45.0})
    assert report.error_curves(classifier_runs[1]) == ({}, {})
    rows = report.build_rows(classifier_runs)
    png = report.chart_png(rows, classifier_runs)
    assert png.startswith(b"\x89PNG")


def test_every_paper_classification_row_has_a_shipped_config_the_report_places_there():
    """Tables 2, 3, 4 and 6: for each network of each row a config under
    ImageNet-Classification/ or CIFAR-10/ that tests on the row's set with its test views and
    that `classifier_of` names as the paper does."""
    import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need their keys)
    from resnet_backbone import model_zoo

    placed = set()
    for name in model_zoo.list_configs():
        if name.split("/")[0] not in ("ImageNet-Classification", "CIFAR-10") or \
                Path(name).name.startswith("Base-"):
            continue
        cfg = yaml.safe_load(model_zoo.get_config(name).dump())
        for dataset in cfg["DATASETS"]["TEST"]:
            placed.add((dataset, cfg["MODEL"]["CLASSIFIER"]["TEST_MODE"],
                        report.classifier_of(cfg)))
    missing = [(table, dataset, mode, arch)
               for (dataset, mode), tables in CLASSIFICATION_RESULTS.items()
               for table, _, _, paper in tables for arch in paper
               if (dataset, mode, arch) not in placed]
    assert not missing


def test_whole_image_ten_crops_are_not_placed_beside_the_papers_numbers(tmp_path):
    run = fake_classifier_run(tmp_path, "r50_image", 50, {"imagenet_val": errors(23.0, 7.0)},
                              shortcut="B", test_mode="10crop", ten_crop_region="image",
                              backbone="build_paper_resnet_backbone")
    ours = [r for r in report.build_rows([run]) if r.run == run]
    assert {(r.table, r.setting, r.paper) for r in ours} == {
        ("—", "imagenet_val (10crop-image), top-1 err", None),
        ("—", "imagenet_val (10crop-image), top-5 err", None),
    }


@pytest.fixture
def seeded_runs(tmp_path):
    """ResNet-18 and Plain-18 demo runs at seeds 0-2 (OUTPUT/<net>/seed<N>), each with its
    training log: loss and box-head foreground accuracy at two iterations."""
    runs = []
    for name, residual, ap50s in (("resnet18_c4", True, (64.4, 69.6, 64.0)),
                                  ("plain18_c4", False, (62.0, 65.6, 59.0))):
        (tmp_path / name).mkdir()
        for seed, ap50 in enumerate(ap50s):
            run = fake_run(tmp_path / name, f"seed{seed}", "build_paper_resnet_backbone", 18,
                           {"synthetic_shapes_val": {"bbox": {"AP": ap50 / 2, "AP50": ap50}}},
                           residual=residual)
            config = yaml.safe_load(Path(run, "config.yaml").read_text())
            Path(run, "config.yaml").write_text(yaml.safe_dump(
                {**config, "SEED": seed, "OUTPUT_DIR": run}))
            log = [{"iteration": 19, "total_loss": 2.0 + seed, "fast_rcnn/fg_cls_accuracy": 0.1},
                   {"iteration": 39, "total_loss": 1.5, "fast_rcnn/fg_cls_accuracy": 0.5}]
            Path(run, "metrics.json").write_text("".join(json.dumps(e) + "\n" for e in log))
            runs.append(run)
    return runs


def test_runs_that_differ_only_in_seed_are_one_setting(seeded_runs, tmp_path):
    groups = report.seed_groups(seeded_runs[::-1])  # the order of the seeds given does not matter
    assert [(g.label, g.seeds) for g in groups] == [("Plain-18", [0, 1, 2]), ("ResNet-18", [0, 1, 2])]
    assert groups[1].runs == seeded_runs[:3]
    other = fake_run(tmp_path, "resnet18_longer", "build_paper_resnet_backbone", 18,
                     {"synthetic_shapes_val": {"bbox": {"AP": 1.0, "AP50": 2.0}}})
    config = yaml.safe_load(Path(other, "config.yaml").read_text())
    Path(other, "config.yaml").write_text(yaml.safe_dump({**config, "SOLVER": {"MAX_ITER": 2}}))
    labels = [g.label for g in report.seed_groups(seeded_runs[:3] + [other])]
    assert labels == ["ResNet-18 (resnet18_c4)", "ResNet-18 (resnet18_longer)"]


def test_the_markdown_gives_every_seed_and_the_spread(seeded_runs):
    text = report.to_markdown(report.build_rows(seeded_runs))
    assert all(run in text for run in seeded_runs)
    spread = report.spread_markdown(report.build_rows(seeded_runs),
                                    report.seed_groups(seeded_runs))
    rows = [cells(line) for line in spread.splitlines()[4:]]
    assert cells(spread.splitlines()[2]) == ["network", "test set, metric", "seeds", "mean", "range",
                                             "a new seed (95 %)"]
    assert ["ResNet-18", "synthetic_shapes_val, AP50", "0, 1, 2", "66.0", "64.0 to 69.6",
            "50.5 to 81.5"] in rows
    assert ["Plain-18", "synthetic_shapes_val, AP50", "0, 1, 2", "62.2", "59.0 to 65.6",
            "45.8 to 78.6"] in rows


def test_the_chart_draws_every_seed(seeded_runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report.seed_groups(seeded_runs)
    rows = [r for r in report.build_rows(seeded_runs) if r.ours is not None]
    for read in (report.training_losses, report.foreground_accuracies):
        fig, axis = plt.subplots()
        report.draw_curves(axis, {run: read(run) for run in seeded_runs}, groups, "y", "t")
        drawn = [line for line in axis.lines if len(line.get_xdata())]
        assert len(drawn) == len(seeded_runs)
        assert {line.get_color() for line in drawn[:3]} != {line.get_color() for line in drawn[3:]}
        plt.close(fig)
    assert report.foreground_accuracies(seeded_runs[0]) == {19: 10.0, 39: 50.0}
    fig, axis = plt.subplots()
    report.draw_bars(axis, rows, groups, "AP (%)", "t", "Tables 7, 8")
    dots = sorted(float(y) for c in axis.collections for _, y in c.get_offsets())
    assert dots == sorted(r.ours for r in rows)
    assert sorted(round(p.get_height(), 2) for p in axis.patches) == sorted(
        [33.0, 66.0, 31.1, 62.2])  # the mean of AP and of AP50 of each network
    plt.close(fig)
    assert report.chart_png(report.build_rows(seeded_runs), seeded_runs).startswith(b"\x89PNG")
