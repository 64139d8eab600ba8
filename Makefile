# resnet_backbone: set-up and entry points. `make help` explains the variables.
#
# Every target that runs code first runs `setup`, which installs what is missing into the
# environment (by default the virtual environment .venv in this checkout) through
# tools/install_detectron2.py, and returns in well under a second when nothing changed.

PYTHON ?= python3
VENV   ?= .venv

ifeq ($(origin PY),undefined)
PY          := $(VENV)/bin/python
SETUP_WHERE := --venv $(VENV)
else
SETUP_WHERE := --python $(PY)
endif

SETUP = $(PYTHON) tools/install_detectron2.py $(SETUP_WHERE) $(if $(FORCE),--force)

.PHONY: help setup test demo clean-venv

help:
	@echo "Targets:"
	@echo "  make demo     set up, then run the demo (tools/demo.py)"
	@echo "  make test     set up, then run the tests (pytest -q tests)"
	@echo "  make setup    only set up: torch, detectron2, the other requirements, this package (-e)"
	@echo "  make clean-venv  remove $(VENV)"
	@echo ""
	@echo "Variables:"
	@echo "  VENV=DIR      environment to use (default .venv). Created with PYTHON if it does not"
	@echo "                exist; an existing venv or conda env is used as it is, e.g."
	@echo "                VENV=\$$CONDA_PREFIX"
	@echo "  PY=EXE        use this interpreter's environment instead of a venv, e.g."
	@echo "                PY=\$$(which python) for an env with a source-built detectron2"
	@echo "  PYTHON=EXE    interpreter that runs the installer and creates the venv (python3)"
	@echo "  FORCE=1       ignore the set-up stamp and check every step again"
	@echo ""
	@echo "The set-up installs torch==2.14.1/torchvision==0.29.1 only where torch is missing, and"
	@echo "leaves a detectron2 that already works (e.g. built from source with its compiled ops)"
	@echo "untouched; otherwise it installs upstream detectron2 v0.6 from the PyPI archive"
	@echo "pb1-detectron2==0.6, adapted, without compiled ops (see tools/install_detectron2.py)."

setup:
	@$(SETUP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/demo.py

clean-venv:
	rm -rf $(VENV)
