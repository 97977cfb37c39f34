"""Where the widget's results go in the viewer: Labels and probability layers on the image's grid, side by side.

A layer the widget made is updated in place when a run with the same model and mode repeats; the layers
of a comparison sit to the right of the image, ``GAP`` apart, under a title each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compare import Row
from .core import Result

GAP = 8  # world units between the layers of a comparison
FOREGROUND = "#00d7ff"  # the colour of binary masks


def put_labels(viewer: Any, name: str, result: Result, image: Any, offset: float = 0.0) -> Any:
    """Add the Labels layer `name`, or replace its data when it exists; placed on `image`'s grid."""
    scale, translate = geometry(image, result.labels.ndim, result.spatial_dims)
    translate[-1] += offset
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data, layer.scale, layer.translate = result.labels, scale, translate
        return layer
    colours = {}
    if result.classes == 1 and result.mode != "instances":  # one bright colour for the foreground
        from napari.utils.colormaps import DirectLabelColormap

        colours["colormap"] = DirectLabelColormap(color_dict={None: "transparent", 1: FOREGROUND})
    return viewer.add_labels(
        result.labels,
        name=name,
        scale=scale,
        translate=translate,
        opacity=0.55,
        **colours,
        metadata={"unetpp": {"made": True}},  # never offered as ground truth
    )


def put_probabilities(viewer: Any, name: str, result: Result, image: Any) -> None:
    """The foreground probability as an Image layer; one layer per class for several classes."""
    if result.probabilities is None:
        return
    maps = {name: result.probabilities}
    if result.classes > 1:  # (*lead, K, *spatial)
        maps = {f"{name} {k}": np.take(result.probabilities, k, axis=result.lead) for k in range(result.classes)}
    scale, translate = geometry(image, result.labels.ndim, result.spatial_dims)
    for layer_name, data in maps.items():
        if layer_name in viewer.layers:
            layer = viewer.layers[layer_name]
            layer.data, layer.scale, layer.translate = data, scale, translate
        else:
            viewer.add_image(
                data,
                name=layer_name,
                scale=scale,
                translate=translate,
                colormap="magma",
                blending="additive",
                contrast_limits=(0.0, 1.0),
                opacity=0.6,
            )


def put_side_by_side(viewer: Any, name: str, rows: list[Row], image: Any) -> None:
    """One Labels layer per mode of a comparison, right of `image`, with titles."""
    width = rows[0].result.labels.shape[-1] * float(image.scale[-1])  # the layers' width
    for k, row in enumerate(rows, start=1):
        put_labels(viewer, f"{name} {row.result.mode} [compare]", row.result, image, k * (width + GAP))
    put_titles(viewer, f"{name} [compare titles]", rows, image, width)


def put_titles(viewer: Any, name: str, rows: list[Row], image: Any, width: float) -> None:
    """A title above each layer of the comparison: its mode (the table has the numbers)."""
    scale, translate = geometry(image, rows[0].result.labels.ndim, rows[0].result.spatial_dims)
    top = translate[-2] - 2 * scale[-2]
    coords = [[*translate[:-2], top, translate[-1] + k * (width + GAP)] for k in range(1, len(rows) + 1)]
    titles = [r.result.mode for r in rows]
    if name in viewer.layers:
        viewer.layers.remove(name)
    text = {"string": "{title}", "color": "white", "size": 10, "anchor": "upper_left"}
    viewer.add_points(np.array(coords), features={"title": titles}, text=text, size=0.01, name=name)


def made_here(layer: Any) -> bool:
    return bool(getattr(layer, "metadata", {}).get("unetpp", {}).get("made"))


def geometry(image: Any, ndim: int, spatial_dims: int) -> tuple[list[float], list[float]]:
    """Scale and translate for a layer of `ndim` axes (leading ones, then spatial) over `image`.

    An image with a channel axis before its spatial ones has one axis more than its labels: that one is
    left out (napari already leaves the colour axis of RGB images out of their scale).
    """
    scale, translate = [float(s) for s in image.scale], [float(t) for t in image.translate]
    if len(scale) > ndim:
        axis = ndim - spatial_dims
        del scale[axis], translate[axis]
    return scale[-ndim:], translate[-ndim:]


__all__ = ["GAP", "geometry", "made_here", "put_labels", "put_probabilities", "put_side_by_side"]
