"""The tiny run every engine and fault test trains: a depth-2 model on six generated 64² images, in seconds."""

TINY_RUN = [
    "model.depth=2",
    "model.widths=[4,8,16]",
    "data.layout=synthetic",
    "data.synthetic_images=6",
    "data.synthetic_size=64",
    "data.patch_size=[32,32]",
    "data.patches_per_image=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_fraction=0.34",
    "train.progress=false",
]
