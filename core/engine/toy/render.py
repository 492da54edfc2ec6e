"""Drawing of one toy object: a shape filled with a pattern, on a plain background.

Pure drawing, no vocabulary: the caller (``dataset.render``) maps names to RGB. Every
object is drawn supersampled (``SUPERSAMPLE`` x) and box-filtered down to 64x64, so edges
are antialiased. A pattern is painted in the object's own frame (centre, radius, rotation)
on a full-canvas layer in the first colour, then cut out by the shape's mask:

* ``solid``: the first colour only;
* ``striped``: bands of the second colour, period 0.6 r, half of each period;
* ``ringed``: concentric rings of the second colour (bands of 0.22 r, a bullseye);
* ``dotted``: a grid of dots of the second colour (spacing 0.55 r, radius 0.16 r);
* ``checkered``: a checkerboard of cells 0.5 r, the centre cell in the first colour;
* ``smiley``: two eyes and a smile in the second colour.

Sizes are relative to r (17-24 px at 64x64) so that each feature spans at least one 4-px
latent cell of the toy VAE.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4
RGB = tuple[int, int, int]
Point = tuple[float, float]
PATTERNS: tuple[str, ...] = ("solid", "striped", "ringed", "dotted", "checkered", "smiley")


def _frame(centre: Point, angle: float):
    """Map object-frame points (x, y) to canvas points: rotate by ``angle`` degrees, then shift."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    cx, cy = centre

    def to_canvas(x: float, y: float) -> Point:
        return (cx + x * cos - y * sin, cy + x * sin + y * cos)

    return to_canvas


def shape_polygon(shape: str, *, centre: Point, radius: float, angle: float) -> list[Point]:
    """Vertices of ``shape`` (circle excluded) around ``centre``, of size ``radius``, rotated."""
    if shape == "square":
        pts = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a) + 0.2) for a in (math.radians(-90 + 120 * k) for k in range(3))]
    elif shape == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.42) * math.cos(a), (1.0 if k % 2 == 0 else 0.42) * math.sin(a))
            for k, a in ((k, math.radians(-90 + 36 * k)) for k in range(10))
        ]
    elif shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w)]
        pts += [(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    elif shape == "heart":
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.1))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    to_canvas = _frame(centre, angle)
    return [to_canvas(radius * x, radius * y) for x, y in pts]


def shape_mask(shape: str, *, size: int, centre: Point, radius: float, angle: float) -> Image.Image:
    """The object's silhouette as an L-mode mask (255 inside)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        r = radius * 0.9
        draw.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], fill=255)
    else:
        draw.polygon(shape_polygon(shape, centre=centre, radius=radius, angle=angle), fill=255)
    return mask


def _stripes(draw: ImageDraw.ImageDraw, to_canvas, r: float, fill: RGB) -> None:
    period, span = 0.6 * r, 1.2 * r
    for k in range(-3, 3):
        y0 = (k + 0.25) * period
        band = [(-span, y0), (span, y0), (span, y0 + period / 2), (-span, y0 + period / 2)]
        draw.polygon([to_canvas(x, y) for x, y in band], fill=fill)


def _rings(draw: ImageDraw.ImageDraw, centre: Point, r: float, fill: RGB, base: RGB) -> None:
    cx, cy = centre
    for k, colour in ((4, base), (3, fill), (2, base), (1, fill), (0, base)):
        rr = (k + 1) * 0.22 * r
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=colour)


def _dots(draw: ImageDraw.ImageDraw, to_canvas, r: float, fill: RGB) -> None:
    spacing, dot = 0.55 * r, 0.16 * r
    for i in range(-2, 3):
        for j in range(-2, 3):
            x, y = to_canvas(i * spacing, j * spacing)
            draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=fill)


def _checks(draw: ImageDraw.ImageDraw, to_canvas, r: float, fill: RGB) -> None:
    cell = 0.5 * r
    for i in range(-3, 3):
        for j in range(-3, 3):
            if (i + j) % 2 == 0:
                continue  # cell (0, 0) holds the centre: it stays in the base colour
            x0, y0 = (i - 0.5) * cell, (j - 0.5) * cell
            square = [(x0, y0), (x0 + cell, y0), (x0 + cell, y0 + cell), (x0, y0 + cell)]
            draw.polygon([to_canvas(x, y) for x, y in square], fill=fill)


def _face(draw: ImageDraw.ImageDraw, to_canvas, r: float, fill: RGB, angle: float) -> None:
    eye = 0.15 * r
    for ex in (-0.33, 0.33):
        x, y = to_canvas(ex * r, -0.28 * r)
        draw.ellipse([x - eye, y - eye, x + eye, y + eye], fill=fill)
    cx, cy = to_canvas(0.0, 0.02 * r)
    m = 0.48 * r
    draw.arc(
        [cx - m, cy - m, cx + m, cy + m], 25 + angle, 155 + angle, fill=fill, width=max(2, int(0.13 * r))
    )


def paint_pattern(
    layer: Image.Image, pattern: str, *, centre: Point, radius: float, angle: float, base: RGB, fill: RGB
) -> None:
    """Paint ``pattern`` in colour ``fill`` over ``layer`` (already filled with ``base``)."""
    draw = ImageDraw.Draw(layer)
    to_canvas = _frame(centre, angle)
    if pattern == "solid":
        return
    if pattern == "striped":
        _stripes(draw, to_canvas, radius, fill)
    elif pattern == "ringed":
        _rings(draw, centre, radius, fill, base)
    elif pattern == "dotted":
        _dots(draw, to_canvas, radius, fill)
    elif pattern == "checkered":
        _checks(draw, to_canvas, radius, fill)
    elif pattern == "smiley":
        _face(draw, to_canvas, radius, fill, angle)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; have {PATTERNS}")


def _paint_object(
    canvas: Image.Image,
    *,
    shape: str,
    pattern: str,
    base: RGB,
    fill: RGB,
    radius: float,
    centre: Point,
    angle: float,
) -> None:
    """Paint one object onto the supersampled ``canvas`` (``radius``/``centre`` in 64x64 pixels)."""
    s = SUPERSAMPLE
    size = canvas.size[0]
    big_centre, big_radius = (centre[0] * s, centre[1] * s), radius * s
    layer = Image.new("RGB", (size, size), base)
    paint_pattern(layer, pattern, centre=big_centre, radius=big_radius, angle=angle, base=base, fill=fill)
    mask = shape_mask(shape, size=size, centre=big_centre, radius=big_radius, angle=angle)
    canvas.paste(layer, (0, 0), mask)


def draw_scene(objects: list[dict], *, background: RGB) -> Image.Image:
    """A 64x64 RGB image of ``objects`` (keyword sets of ``draw_object``) on ``background``."""
    canvas = Image.new("RGB", (IMAGE_SIZE * SUPERSAMPLE,) * 2, background)
    for obj in objects:
        _paint_object(canvas, **obj)
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def draw_object(
    *,
    shape: str,
    pattern: str,
    base: RGB,
    fill: RGB,
    background: RGB,
    radius: float,
    centre: Point,
    angle: float,
) -> Image.Image:
    """One 64x64 RGB image: ``shape`` in ``base`` with ``pattern`` in ``fill`` on ``background``.

    ``radius`` and ``centre`` are in 64x64 pixels, ``angle`` in degrees.
    """
    obj = {"shape": shape, "pattern": pattern, "base": base, "fill": fill}
    return draw_scene([{**obj, "radius": radius, "centre": centre, "angle": angle}], background=background)
