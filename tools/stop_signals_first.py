"""The stop-signal handlers, installed before anything heavy is imported.

The training tools import this module first (their own folder is on sys.path: tools/ in a
clone, resnet_backbone/tools in a wheel): from then on a SIGTERM or SIGUSR1, also during the
imports of torch and Detectron2, ends the run with exit status 75 and one line. The handlers'
module, resnet_backbone/engine/preemption.py, imports only the standard library; it is loaded
here by its path, under its own name, because importing it through the package would first run
the package's __init__, which imports Detectron2. The package then uses this same module.
"""
import importlib.util
import os
import sys

NAME = "resnet_backbone.engine.preemption"

if NAME not in sys.modules:
    _package = importlib.util.find_spec("resnet_backbone").submodule_search_locations[0]
    _spec = importlib.util.spec_from_file_location(
        NAME, os.path.join(_package, "engine", "preemption.py"))
    sys.modules[NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[NAME])
preemption = sys.modules[NAME]
preemption.install_handlers()
