"""The drawing of one synthetic sample: the five `layout.SHAPE_CLASSES` on textured backgrounds
with unlabelled clutter, each class in its own colour family except a `colour_swap_prob`
fraction (so the outline matters), of varied size and rotation, cut by the border and
overlapping, but never with less than `min_visible` of an object in view. Boxes are the extent of
the visible pixels. Sample `i` of a split has its own generator seeded with (seed, split, i).
"""
import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from .layout import SHAPE_CLASSES

SPLIT_CODES = {"train": 0, "val": 1}

# One saturated colour family per class (RGB), in SHAPE_CLASSES order.
_CLASS_COLOURS = np.array(
    [(215, 45, 45), (40, 170, 60), (45, 85, 220), (235, 195, 30), (190, 50, 200)], dtype=np.float32
)
_SUPERSAMPLE = 2  # sub-samples per pixel side used for anti-aliased edges


def _param(default, help):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """What the generator draws; each field's help is also its tools/make_synthetic_data.py
    option's."""

    seed: int = _param(0, "random seed; sample i of a split depends only on (seed, split, i)")
    num_train: int = _param(200, "images in the train split")
    num_val: int = _param(50, "images in the val split")
    min_side: int = _param(160, "smallest image width/height")
    max_side: int = _param(224, "largest image width/height")
    min_objects: int = _param(1, "fewest objects attempted per image (a failed placement is "
                                 "skipped)")
    max_objects: int = _param(5, "most objects attempted per image")
    min_object_frac: float = _param(0.18, "smallest object diameter, as a fraction of the "
                                          "shorter image side")
    max_object_frac: float = _param(0.5, "largest object diameter, as a fraction of the shorter "
                                         "image side")
    min_visible: float = _param(0.5, "fraction of each object's area that must stay visible")
    occlusion_prob: float = _param(0.35, "chance an object is placed against an earlier one")
    colour_swap_prob: float = _param(0.2, "chance an object takes another class's colour")
    max_clutter: int = _param(3, "most unlabelled clutter lines per image")
    jpeg_quality: int = _param(92, "JPEG quality of the written images")

    def validate(self) -> "SyntheticParams":
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_train < 0 or self.num_val < 0:
            raise ValueError("num_train and num_val must be >= 0")
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError(
                f"need 32 <= min_side <= max_side, got {self.min_side}, {self.max_side}"
            )
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError("need 0 <= min_objects <= max_objects")
        if not 0 < self.min_object_frac <= self.max_object_frac <= 1:
            raise ValueError("need 0 < min_object_frac <= max_object_frac <= 1")
        if not 0 < self.min_visible <= 1:
            raise ValueError("min_visible must be in (0, 1]")
        return self


# ---- drawing ------------------------------------------------------------------------------------


def _muted_colour(rng) -> np.ndarray:
    grey = rng.uniform(40, 215)
    return np.clip(grey + rng.uniform(-1, 1, 3) * rng.uniform(8, 55), 0, 255).astype(np.float32)


def _smooth_noise(rng, h: int, w: int) -> np.ndarray:
    """Values in [0, 1]: a coarse random grid upsampled bilinearly."""
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    grid = rng.uniform(0, 1, (gh, gw)).astype(np.float32)
    ys = np.linspace(0, gh - 1, h, dtype=np.float32)
    xs = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), gh - 2)
    x0 = np.minimum(xs.astype(np.int64), gw - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = _muted_colour(rng), _muted_colour(rng)
    kind = int(rng.integers(3))
    angle = rng.uniform(0, 2 * math.pi)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    if kind == 0:  # linear gradient
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    elif kind == 1:  # stripes, soft or hard
        period = rng.uniform(6, 32)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * proj / period + rng.uniform(0, 2 * math.pi))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    else:  # blotchy smooth noise
        t = _smooth_noise(rng, h, w)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img += rng.normal(0, rng.uniform(2, 12), (h, w, 3)).astype(np.float32)
    return img


def _rotated(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _regular_polygon(n: int, radius: float, rotation: float) -> np.ndarray:
    a = rotation + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _shape_polygon(name: str, radius: float, rotation: float) -> Optional[np.ndarray]:
    """Vertices relative to the centre, or None for the circle."""
    if name == "circle":
        return None
    if name == "square":
        return _regular_polygon(4, radius, rotation)
    if name == "triangle":
        return _regular_polygon(3, radius * 1.1, rotation)
    if name == "star":
        pts = _regular_polygon(10, radius, rotation)
        pts[1::2] *= 0.45
        return pts
    if name == "cross":
        a, r = radius * 0.34, radius
        pts = np.array(
            [(-a, r), (a, r), (a, a), (r, a), (r, -a), (a, -a),
             (a, -r), (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a)],
            dtype=np.float64,
        )
        return _rotated(pts, rotation)
    raise KeyError(name)


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _inside_polygon(px: np.ndarray, py: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd rule: a ray to +x from each point crosses the boundary an odd number of times."""
    inside = np.zeros(px.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0)):
        if y1 == y2:
            continue
        straddles = (y1 > py) != (y2 > py)
        x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= straddles & (px < x_cross)
    return inside


def _coverage(name, cx, cy, radius, rotation, h, w):
    """Anti-aliased coverage of a shape over the part of its bounding square inside the image.

    Returns (y0, x0, coverage in [0, 1] as float32, exact area of the whole shape in pixels), or
    None when the shape lies entirely outside the image.
    """
    x0, x1 = max(int(math.floor(cx - radius * 1.1)), 0), min(int(math.ceil(cx + radius * 1.1)), w)
    y0, y1 = max(int(math.floor(cy - radius * 1.1)), 0), min(int(math.ceil(cy + radius * 1.1)), h)
    if x0 >= x1 or y0 >= y1:
        return None
    s = _SUPERSAMPLE
    offsets = (np.arange(s) + 0.5) / s
    py = (np.arange(y0, y1)[:, None] + offsets[None, :]).reshape(-1) - cy
    px = (np.arange(x0, x1)[:, None] + offsets[None, :]).reshape(-1) - cx
    py, px = np.meshgrid(py, px, indexing="ij")
    pts = _shape_polygon(name, radius, rotation)
    if pts is None:
        hit, area = px * px + py * py <= radius * radius, math.pi * radius * radius
    else:
        hit, area = _inside_polygon(px, py, pts), _polygon_area(pts)
    cov = hit.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3), dtype=np.float32)
    return y0, x0, cov, area


def _object_colour(rng, cls: int, swap_prob: float) -> np.ndarray:
    k = len(SHAPE_CLASSES)
    family = cls if rng.random() >= swap_prob else (cls + int(rng.integers(1, k))) % k
    return np.clip(_CLASS_COLOURS[family] + rng.normal(0, 18, 3), 0, 255).astype(np.float32)


def _paint(img, region, cov, colour, rng):
    """Blend a shaded, optionally outlined fill into img over `region` with alpha `cov`."""
    rh, rw = cov.shape
    yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / max(rh, rw, 1)
    fill = colour * (1 + rng.uniform(-0.25, 0.25) * (ramp - 0.5))[..., None]
    fill = fill + rng.normal(0, 5, fill.shape).astype(np.float32)
    if rng.random() < 0.4:  # dark outline
        solid = cov >= 0.5
        interior = solid.copy()
        interior[1:, :] &= solid[:-1, :]
        interior[:-1, :] &= solid[1:, :]
        interior[:, 1:] &= solid[:, :-1]
        interior[:, :-1] &= solid[:, 1:]
        fill[solid & ~interior] *= 0.55
    alpha = cov[..., None]
    img[region] = img[region] * (1 - alpha) + fill * alpha


def _draw_clutter(img, rng, count: int) -> None:
    h, w = img.shape[:2]
    for _ in range(count):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        length, width = rng.uniform(0.2, 0.8) * max(h, w), rng.uniform(1, 3)
        half = np.array([(-length / 2, -width / 2), (length / 2, -width / 2),
                         (length / 2, width / 2), (-length / 2, width / 2)])
        pts = _rotated(half, rng.uniform(0, math.pi))
        py, px = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        hit = _inside_polygon(px - cx, py - cy, pts)
        colour = _muted_colour(rng)
        img[hit] = img[hit] * 0.3 + colour * 0.7


def render_sample(params: SyntheticParams, split: str, index: int) -> Tuple[np.ndarray, List[Dict]]:
    """Draw sample `index` of `split`.

    Returns the RGB image (H, W, 3) uint8 and its objects, bottom to top, each a dict with
    "category_id" (0-based, into SHAPE_CLASSES), "bbox" [x0, y0, x1, y1] in integer pixels with
    x1, y1 exclusive (the visible extent), "area" (visible pixels), "truncated" and "occluded".
    """
    rng = np.random.default_rng([params.seed, SPLIT_CODES[split], index])
    h = int(rng.integers(params.min_side, params.max_side + 1))
    w = int(rng.integers(params.min_side, params.max_side + 1))
    img = _background(rng, h, w)
    _draw_clutter(img, rng, int(rng.integers(0, params.max_clutter + 1)))

    owner = np.full((h, w), -1, dtype=np.int32)  # index of the topmost object at each pixel
    placed = []  # per object: dict(cls, cx, cy, r, area, in_image)
    visible = []  # visible pixels per object
    short = min(h, w)
    log_lo, log_hi = math.log(params.min_object_frac), math.log(params.max_object_frac)
    for _ in range(int(rng.integers(params.min_objects, params.max_objects + 1))):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        radius = 0.5 * short * math.exp(rng.uniform(log_lo, log_hi))
        rotation = rng.uniform(0, 2 * math.pi)
        colour = _object_colour(rng, cls, params.colour_swap_prob)
        for _attempt in range(30):
            if placed and rng.random() < params.occlusion_prob:
                other = placed[int(rng.integers(len(placed)))]
                angle = rng.uniform(0, 2 * math.pi)
                dist = rng.uniform(0.5, 1.0) * (radius + other["r"])
                cx, cy = other["cx"] + dist * math.cos(angle), other["cy"] + dist * math.sin(angle)
            else:
                cx = rng.uniform(0.3 * radius, w - 0.3 * radius)
                cy = rng.uniform(0.3 * radius, h - 0.3 * radius)
            drawn = _coverage(SHAPE_CLASSES[cls], cx, cy, radius, rotation, h, w)
            if drawn is None:
                continue
            y0, x0, cov, area = drawn
            solid = cov >= 0.5
            n_solid = int(solid.sum())
            if n_solid < params.min_visible * area:
                continue
            region = (slice(y0, y0 + cov.shape[0]), slice(x0, x0 + cov.shape[1]))
            under = owner[region][solid]
            lost = np.bincount(under[under >= 0], minlength=len(placed))
            if all(visible[j] - lost[j] >= params.min_visible * placed[j]["area"]
                   for j in range(len(placed))):
                break
        else:
            continue  # no acceptable placement: skip this object
        _paint(img, region, cov, colour, rng)
        for j in range(len(placed)):
            visible[j] -= int(lost[j])
        owner[region][solid] = len(placed)
        placed.append(dict(cls=cls, cx=cx, cy=cy, r=radius, area=area, in_image=n_solid))
        visible.append(n_solid)

    img += rng.normal(0, 3, img.shape).astype(np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    objects = []
    for j, obj in enumerate(placed):
        ys, xs = np.nonzero(owner == j)
        objects.append(
            {
                "category_id": obj["cls"],
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "area": int(xs.size),
                "truncated": int(obj["in_image"] < 0.97 * obj["area"]),
                "occluded": int(xs.size < 0.97 * obj["in_image"]),
            }
        )
    return image, objects
