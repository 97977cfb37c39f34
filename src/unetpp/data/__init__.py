"""Data for the UNet++ family: readers, data sets, splits, patches, augmentation, demo data, downloads.

Every data set yields ``{"image": (C, *spatial) float32, "mask": (1, *spatial) int64, "id": str}``, in 2D
and 3D alike. Importing this package is cheap: Pillow, tifffile, nibabel, SciPy and TorchIO are imported
only by the functions that use them (install them with ``pip install "unetpp[train]"``).
"""

from .datasets import ArrayDataset, FolderPairs, Item, SegmentationDataset, convert_channels
from .download import REMOTE_DATASETS, RemoteDataset, RemoteFile, download, from_local, verify
from .io import ImageMeta, read_image, read_mask, read_with_meta
from .layouts import LAYOUTS, Layout, open_dataset, split_indices
from .public import DSB2018, ISBI2012, Decathlon
from .sampling import PatchDataset
from .splits import Split, block_split, kfold_split, random_split
from .synthetic import make_synthetic_em, write_synthetic_dataset
from .transforms import build_transforms, normalize_intensity, percentile_clip, zscore
from .writers import write_image, write_mask

__all__ = [
    "DSB2018",
    "ISBI2012",
    "REMOTE_DATASETS",
    "ArrayDataset",
    "Decathlon",
    "FolderPairs",
    "ImageMeta",
    "Item",
    "LAYOUTS",
    "Layout",
    "PatchDataset",
    "RemoteDataset",
    "RemoteFile",
    "SegmentationDataset",
    "Split",
    "block_split",
    "build_transforms",
    "convert_channels",
    "download",
    "from_local",
    "kfold_split",
    "make_synthetic_em",
    "normalize_intensity",
    "open_dataset",
    "percentile_clip",
    "random_split",
    "read_image",
    "read_mask",
    "read_with_meta",
    "split_indices",
    "verify",
    "write_image",
    "write_mask",
    "write_synthetic_dataset",
    "zscore",
]
