"""Prediction overlays: a label map tinted on its image, as the PNG a user looks at."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_write


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Any-range grey or RGB image ``(C, H, W)`` as ``(H, W, 3)`` uint8, stretched to its 1st-99th percentile."""
    image = np.asarray(image, dtype=np.float32)
    grey = image[:3].transpose(1, 2, 0) if image.shape[0] >= 3 else np.repeat(image[0][..., None], 3, axis=2)
    lo, hi = np.percentile(grey, (1, 99))
    return (np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


PALETTE = np.array([(255, 40, 40), (0, 200, 0), (0, 100, 255), (255, 220, 0), (255, 0, 255), (0, 255, 255)])


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.4) -> np.ndarray:
    """The image ``(C, H, W)`` with a ``(H, W)`` label map tinted on top, as ``(H, W, 3)`` uint8.

    Without ground truth, class k > 0 gets the k-th palette colour (class 1 red). With `truth`, the
    foreground is green where prediction and truth agree and red where they differ.
    """
    rgb = to_uint8(image).astype(np.float32)
    pred = np.asarray(pred)
    if truth is None:
        tints = [(PALETTE[(k - 1) % len(PALETTE)], pred == k) for k in range(1, int(pred.max(initial=0)) + 1)]
    else:
        hit, truth = pred > 0, np.asarray(truth) > 0
        tints = [(np.array((0, 200, 0)), hit & truth), (np.array((230, 0, 0)), hit ^ truth)]
    for colour, where in tints:
        rgb[where] = (1 - alpha) * rgb[where] + alpha * colour.astype(np.float32)
    return rgb.astype(np.uint8)


def instance_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image ``(C, H, W)`` with each instance of a label map in its own colour and outlined, ``(H, W, 3)`` uint8.

    Colours step around the hue circle by the golden ratio, so neighbouring ids (often touching
    nuclei) get distant hues; the outline keeps touching instances of similar colour apart.
    """
    from matplotlib.colors import hsv_to_rgb

    rgb = to_uint8(image).astype(np.float32)
    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    hues = (ids * 0.6180339887) % 1.0
    colours = 255 * hsv_to_rgb(np.stack([hues, np.full_like(hues, 0.9), np.ones_like(hues)], axis=1))
    lut = np.zeros((int(labels.max(initial=0)) + 1, 3), dtype=np.float32)
    lut[ids] = colours
    inside = labels > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * lut[labels[inside]]
    edge = np.zeros_like(inside)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge &= inside
    rgb[edge] = lut[labels[edge]]
    return rgb.astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an RGB uint8 array through the one writer."""
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"), overwrite)
