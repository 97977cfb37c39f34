"""Random patches for training, with foreground oversampling: the paper's 96x96 (2D) and 64^3 (3D) crops.

UNet++ was trained on patches (Zhou et al. 2019, Table I: 96x96 for EM, cells and nuclei; 64x64x64 for
the 3D sets). Uniform crops of sparse structures are mostly background, so, as in nnU-Net (Isensee et
al., Nat. Methods 2021), a share of the patches (``fg_prob``, default 0.33) is centred on a random
foreground voxel. Images smaller than the patch are padded.

The sampler is deterministic: patch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, not on the
DataLoader worker that draws it. Call :meth:`PatchDataset.set_epoch` before each epoch (with
non-persistent workers, which copy the data set when an epoch starts) to get new patches every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..utils.padding import pad_end
from .limits import check_patch_count

DEFAULT_PATCH = {2: (96, 96), 3: (64, 64, 64)}

SampleTransform = Callable[[dict], dict]


def _patch_size(patch_size: int | Sequence[int] | None, spatial_dims: int) -> tuple[int, ...]:
    if patch_size is None:
        return DEFAULT_PATCH[spatial_dims]
    size = (patch_size,) * spatial_dims if isinstance(patch_size, int) else tuple(patch_size)
    if len(size) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"patch_size must be {spatial_dims} positive ints (or one int), got {patch_size!r}")
    return size


class PatchDataset(Dataset):
    """Random patches of another data set's samples, with foreground oversampling.

    Sample ``i`` is a patch of image ``i % len(dataset)``; ``patches_per_image`` sets how many patches an
    epoch draws from each image. Each patch gets the key ``"origin"``: its corner in the (padded) image.

    Args:
        dataset: yields ``{"image": (C, *spatial), "mask": (1, *spatial), ...}`` (any data set of
            :mod:`unetpp.data.datasets`), without augmentation: augment patches, not whole images.
        patch_size: one int or one per spatial axis; default 96x96 (2D) or 64x64x64 (3D).
        fg_prob: probability that a patch is centred on a foreground voxel: a random class > 0 present in
            the mask, then a random voxel of it; the rest are uniform. An image without foreground always
            gets a uniform patch.
        patches_per_image: patches per image per epoch.
        num_patches: patches per epoch instead (a fixed number of steps per epoch on any data set); image ``i %
            len(dataset)`` still gives patch ``i``, so every image is drawn equally often.
        spatial_dims: 2 or 3; default ``dataset.spatial_dims``.
        seed: with the epoch, fixes every patch.
        transform: applied to each patch (e.g. :func:`~unetpp.data.transforms.build_transforms`).
        pad_value: image value of padding (0 is the mean of a z-scored image); masks are padded with 0.

    Raises:
        ConfigError: invalid patch size, probability, count or spatial_dims.

    Example:
        >>> patches = PatchDataset(ISBI2012("isbi2012-em"), patch_size=96, fg_prob=0.33)
        >>> patches[0]["image"].shape, patches[0]["mask"].shape
        (torch.Size([1, 96, 96]), torch.Size([1, 96, 96]))
    """

    def __init__(
        self,
        dataset: Dataset,
        patch_size: int | Sequence[int] | None = None,
        *,
        fg_prob: float = 0.33,
        patches_per_image: int = 1,
        num_patches: int | None = None,
        spatial_dims: int | None = None,
        seed: int = 0,
        transform: SampleTransform | None = None,
        pad_value: float = 0.0,
    ) -> None:
        spatial_dims = getattr(dataset, "spatial_dims", None) if spatial_dims is None else spatial_dims
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3 (or set on the data set), got {spatial_dims}")
        if not 0 <= fg_prob <= 1:
            raise ConfigError(f"fg_prob must be in [0, 1], got {fg_prob}")
        if not isinstance(patches_per_image, int) or patches_per_image < 1:
            raise ConfigError(f"data.patches_per_image: got {patches_per_image!r}; expected an integer >= 1")
        if num_patches is not None and num_patches < 1:
            raise ConfigError(f"num_patches must be an int >= 1, got {num_patches!r}")
        check_patch_count(len(dataset), patches_per_image)  # type: ignore[arg-type]
        self.dataset = dataset
        self.spatial_dims = spatial_dims
        self.patch_size = _patch_size(patch_size, spatial_dims)
        self.fg_prob = fg_prob
        self.patches_per_image = patches_per_image
        self.num_patches = num_patches
        self.seed = seed
        self.transform = transform
        self.pad_value = pad_value
        self.epoch = 0

    def __len__(self) -> int:
        if self.num_patches is not None:
            return self.num_patches
        return len(self.dataset) * self.patches_per_image  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (same seed and epoch, same patches)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"patch index {index} out of range for {len(self)} patches")
        sample = self.dataset[index % len(self.dataset)]  # type: ignore[arg-type]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = pad_end(sample["image"], self.patch_size, self.pad_value)
        mask = pad_end(sample["mask"], self.patch_size, 0)
        origin = self._origin(mask[0], rng)
        window = (slice(None), *(slice(o, o + s) for o, s in zip(origin, self.patch_size, strict=True)))
        patch = {
            **sample,
            "image": image[window].contiguous(),
            "mask": mask[window].contiguous(),
            "origin": torch.tensor(origin),
        }
        return self.transform(patch) if self.transform is not None else patch

    def _origin(self, mask: torch.Tensor, rng: np.random.Generator) -> tuple[int, ...]:
        """Corner of the patch: around a random foreground voxel with probability ``fg_prob``, else uniform."""
        shape = mask.shape
        high = [s - p for s, p in zip(shape, self.patch_size, strict=True)]  # last valid corner per axis
        if rng.random() < self.fg_prob:
            classes = torch.unique(mask)
            classes = classes[classes > 0]
            if len(classes):
                # a class first, then one of its voxels (as nnU-Net): small classes are not drowned by large ones
                chosen = classes[int(rng.integers(len(classes)))]
                voxels = torch.nonzero(mask == chosen)  # (K, spatial_dims)
                centre = voxels[int(rng.integers(len(voxels)))].tolist()
                # centre the patch on the voxel, shifted back inside the image at the borders
                return tuple(min(max(c - p // 2, 0), h) for c, p, h in zip(centre, self.patch_size, high, strict=True))
        return tuple(int(rng.integers(0, h + 1)) for h in high)
