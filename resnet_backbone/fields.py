"""The architecture fields of this package's ResNets, in one table.

Each field has one name in a record of a network (`description.describe`, checkpoint metadata),
one Detectron2 config key and one keyword of `make_resnet` / `make_res5` (the field of a
LazyConfig's backbone). The builders read the config through this table
(`builder_arguments`), and the weights check and the converter's printout turn a record back
into config keys or lazy fields through it, so adding an architecture option (a deep stem) is
one row here plus its config key (`config.py`) and builder keyword.
"""
import functools
from dataclasses import dataclass
from typing import Callable, Optional


def _always(record):
    return True


def _residual(record):
    return bool(record.get("residual", True))


def _bottleneck(record):
    return record.get("block") == "bottleneck"


@dataclass(frozen=True)
class Field:
    name: str  # in a record of a network and in checkpoint metadata
    key: Optional[str]  # the Detectron2 config key; None where there is none yet
    argument: Optional[str]  # the keyword of make_resnet / make_res5; None where there is none
    # Whether weights recorded with another value cannot fill the network (False: recorded
    # only, e.g. the norm: BatchNorm in ImageNet training, FrozenBN when fine-tuning).
    required: bool = True
    # Whether the field means anything for a record (a dict of field values and "block").
    applies: Callable[[dict], bool] = _always


FIELDS = (
    Field("depth", "MODEL.RESNETS.DEPTH", "depth"),
    # Where a bottleneck's stride-2 sits: basic blocks have no 1x1 conv to put it in.
    Field("stride_in_1x1", "MODEL.RESNETS.STRIDE_IN_1X1", "stride_in_1x1", applies=_bottleneck),
    Field("residual", "MODEL.RESNET_BACKBONE.RESIDUAL", "residual"),
    Field("shortcut", "MODEL.RESNET_BACKBONE.SHORTCUT", "shortcut", applies=_residual),
    # The stem's kind ("basic": 7x7 conv and max-pool); no config key chooses another yet.
    Field("stem", None, None),
    Field("stem_out_channels", "MODEL.RESNETS.STEM_OUT_CHANNELS", "stem_out_channels"),
    Field("res2_out_channels", "MODEL.RESNETS.RES2_OUT_CHANNELS", "res2_out_channels"),
    Field("norm", "MODEL.RESNETS.NORM", "norm", required=False),
)
FIELDS_BY_NAME = {field.name: field for field in FIELDS}


def config_value(cfg, key):
    """The value of the dotted `key` ("MODEL.RESNETS.DEPTH") in a Detectron2 config."""
    return functools.reduce(getattr, key.split("."), cfg)


def builder_arguments(cfg):
    """{keyword: value} of every field the builders take, read from the config's keys."""
    return {field.argument: config_value(cfg, field.key)
            for field in FIELDS if field.key and field.argument}
