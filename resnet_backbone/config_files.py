"""Every tool's `--config-file`: one reader, the same forms everywhere.

A config is named by
* a shipped config's name, as `model_zoo` lists them ("Demo/resnet18_c4_synthetic.yaml",
  "PascalVOC-Detection/resnet101_c4_voc0712.py");
* a path to a YAML config (Detectron2's keys) or a LazyConfig (`.py`, or a `.yaml` that
  Detectron2's `LazyConfig.save` or a lazy run wrote);
* a run folder, the OUTPUT_DIR of a training run: what the run used, exactly (its
  `lazy_config.yaml` for a lazy run, else its `config.yaml`), with OUTPUT_DIR the folder itself.

YAML is data here: every YAML file (configs, their `_BASE_` files, run folders, saved lazy
configs) is read with `yaml.safe_load`, so a Python tag (`!!python/object/apply:...`) or any
other constructor stops the load, naming the file, the line and the tag, before anything runs.
Detectron2's own readers would run it (`merge_from_file` defaults to `allow_unsafe=True`,
`LazyConfig.load` reads `.yaml` with `yaml.unsafe_load`). A `.py` LazyConfig is code by
design: it is run only when named explicitly, never picked up from a run folder.

`_BASE_` is a path relative to the file (as in Detectron2), an absolute path, or the name of a
shipped config, so a pip user's YAML can start from `_BASE_: "Demo/resnet18_c4_synthetic.yaml"`.
"""
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml
from detectron2.config import CfgNode, LazyConfig, get_cfg
from detectron2.config.compat import downgrade_config, guess_version, upgrade_config
from omegaconf import OmegaConf

from .config import add_resnet_backbone_config

BASE_KEY = "_BASE_"
YAML_EXTENSIONS = (".yaml", ".yml")
# The files a training run leaves in its OUTPUT_DIR that describe it.
RUN_CONFIG = "config.yaml"
RUN_LAZY_CONFIG = "lazy_config.yaml"
FORMS = ("a shipped config name (resnet_backbone.model_zoo.list_configs()), a .yaml or .py "
         "config file, or the OUTPUT_DIR of a training run")
# MODEL.META_ARCHITECTURE -> the function adding the keys of its configs, for those that are
# not detectors; `resnet_backbone.classification` adds "ImageClassifier" when imported.
CONFIG_KEYS = {}


class ConfigFileError(ValueError):
    """A config that cannot be read as given: not found, not data, or malformed."""


class UnsafeConfigError(ConfigFileError):
    """A YAML config asking for a Python object (or any constructor beyond plain data)."""


def config_root():
    """The shipped configs: resnet_backbone/configs in a wheel (setup.py copies configs/ there),
    configs/ beside the package in a checkout or an editable install."""
    installed = Path(__file__).with_name("configs")
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "configs"


def list_configs():
    """Every shipped config, YAML and LazyConfig (`.py`), bases and `common/` parts included, as
    names relative to the config root."""
    root = config_root()
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if path.suffix in (*YAML_EXTENSIONS, ".py") and path.name != "__init__.py"
                  and "__pycache__" not in path.parts)


def get_config_file(name):
    """The path of a shipped config, e.g. "COCO-Detection/resnet101_c4_coco2014.yaml"."""
    names = list_configs()
    if name not in names:
        leaves = [n for n in names if not Path(n).name.startswith("Base-")
                  and not n.startswith("common/")]
        close = difflib.get_close_matches(name, names, n=3)
        raise FileNotFoundError(
            f"resnet_backbone ships no config {name!r} (looked in {config_root()})"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + "; available: " + ", ".join(leaves)
        )
    return str(config_root() / name)


def _line(mark):
    return f", line {mark.line + 1}" if mark is not None else ""


def read_yaml(path):
    """The content of the YAML file `path` as plain data (yaml.safe_load); a tag asking for a
    Python object, or a syntax error, raises an error naming the file, the line and the tag."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.constructor.ConstructorError as error:
        tag = re.search(r"tag '([^']+)'", str(error.problem))
        raise UnsafeConfigError(
            f"{path}{_line(error.problem_mark)}: the tag "
            f"{tag.group(1) if tag else error.problem} is not allowed: configs are read as "
            "data (yaml.safe_load), and this tag asks for a Python object or constructor. "
            "Nothing of the file was run; remove the tag"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigFileError(f"{path}{_line(mark)}: not valid YAML "
                              f"({getattr(error, 'problem', None) or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"{path}: not a text file ({error})") from None


def _merge_into(base, update):
    """Merge the mapping `update` into `base` in place (nested mappings merged key by key, as
    Detectron2 merges a config into its `_BASE_`)."""
    for key, value in update.items():
        if isinstance(value, dict) and key in base:
            if not isinstance(base[key], dict):
                raise ConfigFileError(f"{key}: a mapping here, but its _BASE_ sets a value")
            _merge_into(base[key], value)
        else:
            base[key] = value
    return base


def _base_path(name, including):
    """The file a `_BASE_` entry of `including` names: a path relative to `including`, an
    absolute path, or a shipped config."""
    if not isinstance(name, str):
        raise ConfigFileError(f"{including}: {BASE_KEY} must be a file name or a list of them, "
                              f"not {name!r}")
    expanded = os.path.expanduser(name)
    candidate = expanded if os.path.isabs(expanded) else os.path.join(
        os.path.dirname(including), expanded)
    if os.path.isfile(candidate):
        return candidate
    if name in list_configs():
        return get_config_file(name)
    raise ConfigFileError(f"{including}: {BASE_KEY} {name!r} is neither a file (looked for "
                          f"{candidate}) nor a shipped config (resnet_backbone.model_zoo)")


def read_yaml_with_base(path, _chain=()):
    """The YAML config at `path` as a dict, its `_BASE_` files (one or a list) merged under it;
    every file read as data (`read_yaml`)."""
    real = os.path.realpath(path)
    if real in _chain:
        raise ConfigFileError(f"{path}: {BASE_KEY} files include each other in a cycle")
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a config must be a mapping of keys, not a "
                              f"{type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    merged = {}
    for base in bases if isinstance(bases, list) else [bases]:
        _merge_into(merged, read_yaml_with_base(_base_path(base, path), (*_chain, real)))
    try:
        return _merge_into(merged, data)
    except ConfigFileError as error:
        raise ConfigFileError(f"{path}: {error}") from None


def merge_yaml_file(cfg, path):
    """Detectron2's `cfg.merge_from_file(path)`, reading every file as data and resolving
    `_BASE_` as `read_yaml_with_base` does; configs of an older VERSION are upgraded as
    Detectron2 upgrades them."""
    loaded = CfgNode(read_yaml_with_base(path))
    version = loaded.get("VERSION")
    if version is None:
        version = guess_version(loaded, path)
    if version == cfg.VERSION:
        cfg.merge_from_other_cfg(loaded)
        return cfg
    if version > cfg.VERSION:
        raise ConfigFileError(f"{path}: VERSION {version} is newer than this Detectron2's "
                              f"configs ({cfg.VERSION})")
    old = downgrade_config(cfg, to_version=version)
    old.merge_from_other_cfg(loaded)
    cfg.clear()
    cfg.update(upgrade_config(old))
    return cfg


def meta_architecture(path):
    """MODEL.META_ARCHITECTURE a YAML config (its `_BASE_` files included) sets, or None."""
    model = read_yaml_with_base(path).get("MODEL") or {}
    return model.get("META_ARCHITECTURE") if isinstance(model, dict) else None


def is_lazy_yaml(data):
    """Whether YAML content is a saved LazyConfig (`model` a LazyCall: a `_target_`) rather than
    a config of Detectron2's keys."""
    return isinstance(data, dict) and isinstance(data.get("model"), dict) and \
        "_target_" in data["model"]


@dataclass(frozen=True)
class ConfigSource:
    """Where a `--config-file` argument points: the file to read, whether it is a LazyConfig,
    and the run folder it belongs to (None for a config file)."""

    argument: str
    path: str
    lazy: bool
    run_dir: Optional[str] = None


def locate(argument):
    """The `ConfigSource` of a `--config-file` argument (see the module docstring)."""
    argument = os.fspath(argument)
    if os.path.isdir(argument):
        for name, lazy in ((RUN_LAZY_CONFIG, True), (RUN_CONFIG, False)):
            path = os.path.join(argument, name)
            if os.path.isfile(path):
                return ConfigSource(argument, path, lazy, run_dir=argument)
        raise ConfigFileError(f"--config-file {argument}: a folder without {RUN_CONFIG} or "
                              f"{RUN_LAZY_CONFIG}, so not the OUTPUT_DIR of a training run; "
                              f"name {FORMS}")
    if not os.path.isfile(argument) and argument in list_configs():
        argument_path = get_config_file(argument)
    elif os.path.isfile(argument):
        argument_path = argument
    else:
        raise ConfigFileError(f"--config-file {argument}: no such file, run folder or shipped "
                              f"config; name {FORMS}")
    if argument_path.endswith(".py"):
        return ConfigSource(argument, argument_path, True)
    if not argument_path.endswith(YAML_EXTENSIONS):
        raise ConfigFileError(f"--config-file {argument}: neither .yaml nor .py; name {FORMS}")
    return ConfigSource(argument, argument_path, is_lazy_yaml(read_yaml(argument_path)))


def read_lazy_config(path):
    """A LazyConfig: a `.py` file run as Detectron2's `LazyConfig.load` runs it (code, by
    design), a `.yaml` one read as data."""
    if path.endswith(".py"):
        return LazyConfig.load(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a LazyConfig must be a mapping, not a "
                              f"{type(data).__name__}")
    return OmegaConf.create(data, flags={"allow_objects": True})


def run_checkpoint(run_dir):
    """The weights a training run leaves: model_final.pth, else the file `last_checkpoint`
    names (a run still going or stopped early)."""
    final = os.path.join(run_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    pointer = os.path.join(run_dir, "last_checkpoint")
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            last = os.path.join(run_dir, f.read().strip())
        if os.path.isfile(last):
            return last
        raise FileNotFoundError(f"{pointer} names {last}, which does not exist")
    raise FileNotFoundError(f"{run_dir} holds neither model_final.pth nor last_checkpoint: "
                            "the run has not saved a checkpoint yet")


def _key_sets(path, add_config):
    """The functions that may add the keys of the YAML config at `path`: `add_config` when
    given; else those `CONFIG_KEYS` names for its MODEL.META_ARCHITECTURE, else the detection
    keys, then (a base file that names no META_ARCHITECTURE) every registered set."""
    if add_config is not None:
        return [add_config]
    meta = meta_architecture(path)
    if meta in CONFIG_KEYS:
        return [CONFIG_KEYS[meta]]
    return [add_resnet_backbone_config, *CONFIG_KEYS.values()]


def yaml_config(path, opts=(), add_config=None):
    """The YAML config at `path` merged into Detectron2's defaults plus the keys `add_config`
    adds (default: chosen by its MODEL.META_ARCHITECTURE, see `_key_sets`), `opts` (KEY VALUE
    ...) on top; not frozen."""
    unknown = None
    for add_keys in _key_sets(path, add_config):
        cfg = add_keys(get_cfg())
        try:
            merge_yaml_file(cfg, path)
            break
        except KeyError as error:
            unknown = error
    else:
        meta = meta_architecture(path)
        hint = ("; configs of the classifiers need `import resnet_backbone.classification` "
                "first (it adds their keys)" if meta not in CONFIG_KEYS else "")
        raise KeyError(f"{path}: {unknown.args[0] if unknown.args else unknown}{hint}") from None
    try:
        cfg.merge_from_list(list(opts))
    except AssertionError as error:  # yacs asserts on unknown keys and odd-length lists
        raise KeyError(f"{error} (a command-line override; the known keys are Detectron2's and "
                       "resnet_backbone/config.py's)") from None
    return cfg


def run_overrides(source, *, trained, lazy):
    """The settings a run folder adds to its own config, as overrides in the dialect of its
    config (`lazy`: `key=value` strings, else KEY VALUE pairs): OUTPUT_DIR is the folder (it
    may have moved since), and with `trained` the weights are the run's checkpoint
    (`run_checkpoint`); nothing for a config file."""
    if source.run_dir is None:
        return []
    settings = {"output_dir": source.run_dir}
    if trained:
        settings["weights"] = run_checkpoint(source.run_dir)
    if lazy:
        keys = {"output_dir": "train.output_dir", "weights": "train.init_checkpoint"}
        return [f"{keys[name]}={value}" for name, value in settings.items()]
    keys = {"output_dir": "OUTPUT_DIR", "weights": "MODEL.WEIGHTS"}
    return [item for name, value in settings.items() for item in (keys[name], value)]
