"""The paper's classification half: any backbone of the registry as an ImageNet classifier
(`ImageClassifier`, a meta-architecture), the CIFAR-10 networks, their datasets and evaluator,
and the export of a trained classifier as detection weights. Importing it registers them."""
from .. import model_zoo
from . import cifar, data, shapes_crops  # noqa: F401  (registration)
from .config import add_classification_config
from .evaluation import ClassificationEvaluator
from .model import ImageClassifier

model_zoo.CONFIG_KEYS["ImageClassifier"] = add_classification_config
