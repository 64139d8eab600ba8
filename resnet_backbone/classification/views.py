"""What a classifier sees of an image, through torchvision's functional transforms: the
shorter-side resize shared by training (scale augmentation) and testing, the centre crop, the
10 crops of the paper's Tables 2 and 3 and the multi-scale views of its Table 4.

One resize filter everywhere: bilinear with antialiasing, the filter of PIL and of torchvision's
tensor resize. The paper does not name its filter; antialiasing matters because ImageNet photos
are shrunk by up to 2x (500 -> 256) and a network tested on differently filtered pixels than it
was trained on sees slightly different images.
"""
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

# Where 10-crop testing takes its four corner crops (MODEL.CLASSIFIER.TEN_CROP_REGION).
TEN_CROP_REGIONS = ("square", "image")


def resize_shorter_side(image, size):
    """A (C, H, W) float tensor resized so that its shorter side is `size`, the aspect ratio kept
    (torchvision's rounding: the longer side is truncated)."""
    return TF.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)


def _check_fits(image, size):
    height, width = image.shape[-2:]
    if min(height, width) < size:
        raise ValueError(f"a {height}x{width} image has no {size}x{size} crop")


def center_crop(image, size):
    """(1, C, size, size): the centre crop."""
    _check_fits(image, size)
    return TF.center_crop(image, size)[None]


def ten_crops(image, size, *, region="square"):
    """(10, C, size, size): four corner crops, the centre crop and the flips of all five.

    region "square": the corners of the central square of the image, as in the 10-crop testing
    the paper cites (Krizhevsky et al. crop the central 256x256 square of the image resized to
    256, then take the ten 224x224 views of it); "image": the corners of the whole image.
    The two agree on square images only."""
    _check_fits(image, size)
    if region == "square":
        image = TF.center_crop(image, min(image.shape[-2:]))
    return torch.stack(TF.ten_crop(image, size))


def multiscale_views(image, scales):
    """[(C, H, W)]: the image with its shorter side at each of `scales`, and the flip of each."""
    resized = [resize_shorter_side(image, scale) for scale in scales]
    return [view for scaled in resized for view in (scaled, TF.hflip(scaled))]
