"""The embedded synthetic shapes set (Base-Demo-C4.yaml's data): 160-240 px images, 5 classes."""
dataloader = dict(
    train=dict(datasets=("synthetic_shapes_train",), min_size=(160,), max_size=240, num_workers=1),
    test=dict(datasets=("synthetic_shapes_val",), min_size=160, max_size=240),
)
NUM_CLASSES = 5
