"""The two pixel formats (DESIGN.md: pixel format follows the weights), as `model` overrides:
`model.update(TORCHVISION)` for torchvision's weights; the model configs default to MSRA's."""
MSRA = dict(pixel_mean=[103.530, 116.280, 123.675], pixel_std=[1.0, 1.0, 1.0], input_format="BGR")
TORCHVISION = dict(
    pixel_mean=[123.675, 116.280, 103.530], pixel_std=[58.395, 57.120, 57.375], input_format="RGB"
)
