"""The package's version, stated only here: setup.py reads this file as text (importing the
package needs Detectron2), and `resnet_backbone.__version__` imports it."""
__version__ = "0.3.0"
