"""One reader of `--config-file` for every tool (resnet_backbone/config_files.py, runs.py): the
forms it takes (shipped names, .yaml and .py files, run folders), `_BASE_` naming a shipped
config, and YAML read as data only: a Python tag in any YAML a tool reads stops it, naming the
file, the line and the tag, with nothing run (a marker file the payload would create)."""
import subprocess
import sys

import pytest
import torch
from detectron2.config import get_cfg
from omegaconf import DictConfig

from conftest import REPO
from resnet_backbone import add_resnet_backbone_config, config_files, model_zoo, runs
from resnet_backbone.config_files import ConfigFileError, UnsafeConfigError

sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "datasets"))
import analyze_model  # noqa: E402  (tools/analyze_model.py)
import check_datasets  # noqa: E402  (datasets/check_datasets.py)
import export_model  # noqa: E402  (tools/export_model.py)
import predict  # noqa: E402  (tools/predict.py)

DEMO_YAML = "Demo/resnet18_c4_synthetic.yaml"
DEMO_LAZY = "Demo/resnet18_c4_synthetic.py"


def hostile_yaml(path, marker, *, before="MODEL:\n  DEVICE: cpu\n"):
    """A YAML file whose third line asks yaml.unsafe_load to run `touch marker`."""
    path.write_text(f"{before}OUTPUT_DIR: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    return path


def fake_run(folder, config_text, name="config.yaml"):
    """A run folder: its config and a checkpoint file (never read by the tests using it)."""
    folder.mkdir()
    (folder / name).write_text(config_text)
    (folder / "model_final.pth").write_bytes(b"")
    return folder


# ------------------------------------------------------------------------------------------
# YAML is data
# ------------------------------------------------------------------------------------------
def test_a_python_tag_is_refused_naming_file_line_and_tag(tmp_path):
    marker = tmp_path / "ran"
    config = hostile_yaml(tmp_path / "evil.yaml", marker)
    with pytest.raises(UnsafeConfigError, match=r"evil.yaml, line 3: the tag "
                                                r"tag:yaml.org,2002:python/object/apply:os.system"):
        config_files.read_yaml(config)
    assert not marker.exists()


def test_a_hostile_base_file_is_refused_through_the_leaf(tmp_path):
    marker = tmp_path / "ran"
    hostile_yaml(tmp_path / "base.yaml", marker)
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 3\n')
    with pytest.raises(UnsafeConfigError, match="base.yaml, line 3"):
        config_files.yaml_config(str(leaf))
    assert not marker.exists()


def test_syntax_errors_name_file_and_line(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("MODEL:\n  DEVICE: [cpu\n")
    with pytest.raises(ConfigFileError, match=r"broken.yaml, line \d+: not valid YAML"):
        config_files.read_yaml(config)


def test_other_tags_than_python_are_refused_too(tmp_path):
    config = tmp_path / "tagged.yaml"
    config.write_text("MODEL:\n  DEVICE: !custom cpu\n")
    with pytest.raises(UnsafeConfigError, match="line 2: the tag !custom"):
        config_files.read_yaml(config)


@pytest.mark.parametrize("tool", ["predict", "export", "analyze", "check_datasets"])
@pytest.mark.parametrize("where", ["config", "run folder", "lazy run folder"])
def test_every_tool_refuses_a_hostile_yaml_before_running_anything(tool, where, tmp_path):
    marker = tmp_path / "ran"
    if where == "config":
        target = hostile_yaml(tmp_path / "evil.yaml", marker)
    else:
        name = "config.yaml" if where == "run folder" else "lazy_config.yaml"
        target = fake_run(tmp_path / "run", "", name=name)
        hostile_yaml(target / name, marker,
                     before="MODEL:\n  DEVICE: cpu\n" if where == "run folder" else
                     "model: {_target_: resnet_backbone.make_resnet, depth: 18}\ntrain: {}\n")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    calls = {
        "predict": lambda: predict.main(["--config-file", str(target), "--input", str(image),
                                         "--output", str(tmp_path / "out")]),
        "export": lambda: export_model.main(["--config-file", str(target), "--output",
                                             str(tmp_path / "exported")]),
        "analyze": lambda: analyze_model.main(["--config-file", str(target), "--tasks",
                                               "parameter"]),
        "check_datasets": lambda: check_datasets.main(["--config-file", str(target)]),
    }
    with pytest.raises((UnsafeConfigError, SystemExit)) as raised:
        calls[tool]()
    assert "python/object/apply:os.system" in str(raised.value)
    assert "line 3" in str(raised.value)
    assert not marker.exists()


@pytest.mark.slow  # starts the training tools
@pytest.mark.parametrize("script, extra", [
    ("train_net.py", []), ("train_net.py", ["--eval-only"]), ("pretrain_net.py", []),
    ("lazyconfig_train_net.py", []),
])
def test_training_tools_refuse_a_hostile_run_folder(script, extra, tmp_path):
    marker = tmp_path / "ran"
    run = fake_run(tmp_path / "run", "")
    hostile_yaml(run / "config.yaml", marker)
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / script), "--config-file", str(run), *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    assert "config.yaml, line 3: the tag tag:yaml.org,2002:python/object/apply" in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# The forms a --config-file takes
# ------------------------------------------------------------------------------------------
def test_shipped_names_paths_and_run_folders_are_located(tmp_path):
    yaml_source = config_files.locate(DEMO_YAML)
    assert not yaml_source.lazy and yaml_source.path == model_zoo.get_config_file(DEMO_YAML)
    lazy_source = config_files.locate(DEMO_LAZY)
    assert lazy_source.lazy and lazy_source.path.endswith(DEMO_LAZY)
    assert config_files.locate(yaml_source.path).path == yaml_source.path
    run = fake_run(tmp_path / "run", "MODEL:\n  DEVICE: cpu\n")
    assert config_files.locate(str(run)) == config_files.ConfigSource(
        str(run), str(run / "config.yaml"), False, run_dir=str(run))
    (run / "lazy_config.yaml").write_text("model: {_target_: resnet_backbone.make_resnet}\n")
    assert config_files.locate(str(run)).lazy  # what a lazy run used, not the engine's view


def test_a_saved_lazy_yaml_is_told_from_a_yaml_config(tmp_path):
    saved = tmp_path / "saved.yaml"
    saved.write_text("model: {_target_: resnet_backbone.make_resnet, depth: 18}\n")
    assert config_files.locate(str(saved)).lazy
    assert isinstance(config_files.read_lazy_config(str(saved)), DictConfig)


@pytest.mark.parametrize("argument, message", [
    ("no/such/config.yaml", "no such file, run folder or shipped config"),
    ("Demo/resnet18_c4_synthetc.yaml", "no such file, run folder or shipped config"),
])
def test_anything_else_gets_the_same_error(argument, message, tmp_path):
    with pytest.raises(ConfigFileError, match=message) as raised:
        config_files.locate(argument)
    assert config_files.FORMS in str(raised.value)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigFileError, match="neither .yaml nor .py"):
        config_files.locate(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigFileError, match="not the OUTPUT_DIR of a training run"):
        config_files.locate(str(tmp_path))


def test_a_user_yaml_can_start_from_a_shipped_config(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(f'_BASE_: "{DEMO_YAML}"\nSOLVER:\n  MAX_ITER: 7\n')
    cfg = config_files.yaml_config(str(user))
    shipped = model_zoo.get_config(DEMO_YAML)
    assert cfg.SOLVER.MAX_ITER == 7
    assert cfg.MODEL.RESNETS.DEPTH == shipped.MODEL.RESNETS.DEPTH == 18
    assert cfg.DATASETS.TRAIN == shipped.DATASETS.TRAIN


def test_base_errors_are_named(tmp_path):
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text('_BASE_: "Demo/nothing.yaml"\n')
    with pytest.raises(ConfigFileError, match=r"leaf.yaml: _BASE_ 'Demo/nothing.yaml' is neither"):
        config_files.yaml_config(str(leaf))
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "a.yaml"\n')
    with pytest.raises(ConfigFileError, match="cycle"):
        config_files.yaml_config(str(tmp_path / "a.yaml"))


def test_yaml_configs_merge_as_detectron2_merges_them():
    for name in (DEMO_YAML, "PascalVOC-Detection/resnet101_c4_voc0712.yaml",
                 "PascalVOC-Detection/vgg16_voc0712.yaml"):
        expected = add_resnet_backbone_config(get_cfg())
        expected.merge_from_file(model_zoo.get_config_file(name), allow_unsafe=False)
        assert model_zoo.get_config(name) == expected


def test_get_config_gives_lazy_configs_for_py_names():
    assert any(name.endswith(".py") for name in model_zoo.list_configs())
    lazy = model_zoo.get_config(DEMO_LAZY)
    assert isinstance(lazy, DictConfig) and "model" in lazy


def test_a_run_folder_gives_its_config_with_its_checkpoint(tmp_path):
    text = model_zoo.get_config(DEMO_YAML).dump()
    run = fake_run(tmp_path / "run", text)
    loaded = runs.load_model_run(str(run), ["MODEL.DEVICE", "cpu"])
    assert loaded.weights == str(run / "model_final.pth")
    assert loaded.config.OUTPUT_DIR == str(run)
    assert runs.load_model_run(str(run), trained=False).weights == ""  # the run's own start
    with pytest.raises(FileNotFoundError, match="neither model_final.pth nor last_checkpoint"):
        (run / "model_final.pth").unlink()
        runs.load_model_run(str(run))


def test_lazy_and_yaml_runs_answer_the_same_questions():
    yaml_run = runs.load_model_run(DEMO_YAML, ["MODEL.DEVICE", "cpu"], trained=False)
    lazy_run = runs.load_model_run(DEMO_LAZY, ["train.device=cpu"], trained=False)
    for attribute in ("input_format", "test_datasets", "train_datasets", "num_classes"):
        assert getattr(lazy_run, attribute) == getattr(yaml_run, attribute), attribute
    resize = [runs_of.test_augmentations()[0] for runs_of in (yaml_run, lazy_run)]
    assert list(resize[0].short_edge_length) == list(resize[1].short_edge_length)
    assert resize[0].max_size == resize[1].max_size
    torch.manual_seed(0)
    yaml_model = yaml_run.build_model()
    lazy_model = lazy_run.build_model()
    assert {k: v.shape for k, v in lazy_model.state_dict().items()} == \
        {k: v.shape for k, v in yaml_model.state_dict().items()}
