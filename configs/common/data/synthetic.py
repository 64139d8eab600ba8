"""The embedded synthetic shapes set (Base-Demo-C4.yaml's data): 160-240 px images, 5 classes,
2 images per batch on a CPU."""
from .detection import detection_data

dataloader = detection_data(train=("synthetic_shapes_train",), test="synthetic_shapes_val",
                            min_size=(160,), max_size=240, total_batch_size=2, num_workers=1)
