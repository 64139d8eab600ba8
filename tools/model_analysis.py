"""Flops, activations, parameters and structure of the model any config builds, measured as
Detectron2's tools/analyze_model.py measures them (`detectron2.utils.analysis`, over fvcore).

Flops and activations depend on the input (image size, number of proposals, detections), so
they are averaged over the first images of DATASETS.TEST[0], run through the model as in
inference. fvcore counts one multiply-add as one flop, the paper's unit.
"""
import contextlib
import itertools
import logging
from collections import Counter

import numpy as np
import torch
from fvcore.nn import flop_count_table, parameter_count

from resnet_backbone.runs import load_model_run

logger = logging.getLogger(__name__)

TASKS = ("flop", "activation", "parameter", "structure")


def _d2_analysis():
    """detectron2.utils.analysis, or an error saying why it is missing: upstream v0.6 imports
    caffe2 through detectron2.export, which current torch no longer has."""
    try:
        from detectron2.utils import analysis
    except ImportError as error:
        raise ImportError(
            f"detectron2.utils.analysis cannot be imported ({error}); Detectron2 v0.6 imports "
            "caffe2 there: install Detectron2 with tools/install_detectron2.py (which patches "
            "that import) or from its source"
        ) from error
    return analysis


def analysis_run(config_file, opts=()):
    """The `runs.load_model_run` of `config_file` (any form) with `opts`; on a machine without
    CUDA the model goes to the CPU (the counts do not depend on the device)."""
    run = load_model_run(config_file, opts)
    if run.device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"{run.device_key}={run.device} but no CUDA device: counting on the CPU")
        run.device = "cpu"
    return run


def analysed_model(run, *, load_weights):
    """The model of `run` in eval mode, with its weights loaded if asked (and set)."""
    model = run.build_model()
    if load_weights and run.weights:
        run.checkpointer(model).load(run.weights)  # data only
    return model


def inference_batches(run, num_inputs):
    """The first `num_inputs` one-image batches of the run's first test set, as inference sees
    them."""
    if not run.test_datasets:
        raise ValueError(f"{run.test_datasets_key} is empty: flops and activations are counted "
                         "on the images of its first dataset; name one (e.g. "
                         "synthetic_shapes_val)")
    return list(itertools.islice(run.test_loader(run.test_datasets[0]), num_inputs))


def _mean_std(values):
    return float(np.mean(values)), float(np.std(values))


def count_flops(model, batches):
    """Flops per image (mean, std), mean flops by operator, and fvcore's per-module table of
    the first image."""
    analysis, totals, by_operator, first = _d2_analysis(), [], Counter(), None
    with torch.no_grad():
        for batch in batches:
            counter = analysis.FlopCountAnalysis(model, batch)
            if first is not None:  # unsupported operators are reported once, for the first
                counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_operator.update(counter.by_operator())
            totals.append(counter.total())
            first = counter if first is None else first
    mean, std = _mean_std(totals)
    return {"mean": mean, "std": std, "images": len(totals),
            "by_operator": {k: v / len(totals) for k, v in by_operator.most_common()},
            "table": flop_count_table(first, max_depth=3, show_param_shapes=False)}


@contextlib.contextmanager
def _quiet(logger_name, quiet):
    """Silence a logger (fvcore's warnings on unsupported operators) while `quiet`."""
    log = logging.getLogger(logger_name)
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def count_activations(model, batches):
    """Activations per image in millions (mean, std) and their mean by operator."""
    analysis, totals, by_operator = _d2_analysis(), [], Counter()
    with torch.no_grad():
        for index, batch in enumerate(batches):
            with _quiet("fvcore.nn.jit_analysis", quiet=index > 0):  # reported once
                counts = analysis.activation_count_operators(model, batch)
            by_operator.update(counts)
            totals.append(sum(counts.values()))
    mean, std = _mean_std(totals)
    return {"mean_millions": mean, "std_millions": std, "images": len(totals),
            "by_operator_millions": {k: v / len(totals) for k, v in by_operator.most_common()}}


def count_parameters(model):
    """All parameters and the per-module table (five levels deep)."""
    return {"total": parameter_count(model)[""],
            "table": _d2_analysis().parameter_count_table(model, max_depth=5)}


def analyze_run(run, tasks, *, num_inputs):
    """{task: result} for `tasks` (of TASKS); flops and activations over `num_inputs` images
    with MODEL.WEIGHTS loaded, parameters and structure of the model as built."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; use any of {list(TASKS)}")
    data_tasks = [task for task in tasks if task in ("flop", "activation")]
    model = analysed_model(run, load_weights=bool(data_tasks))
    batches = inference_batches(run, num_inputs) if data_tasks else []
    results = {}
    for task in tasks:
        if task == "flop":
            results[task] = count_flops(model, batches)
        elif task == "activation":
            results[task] = count_activations(model, batches)
        elif task == "parameter":
            results[task] = count_parameters(model)
        else:
            results[task] = str(model)
    return results
