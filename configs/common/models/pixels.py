"""The pixel format of torchvision's weights (DESIGN.md: pixel format follows the weights); the
model configs default to MSRA's (Caffe2) BGR format. The data configs' mappers read
`model.input_format`, so this one call switches the network and its inputs."""


def use_torchvision_pixels(model):
    model.update(pixel_mean=[123.675, 116.280, 103.530], pixel_std=[58.395, 57.120, 57.375],
                 input_format="RGB")
