"""Weights: reading files as data, checkpoints and their metadata, the published ImageNet
weights (the imagenet:// cache) and the converters."""
