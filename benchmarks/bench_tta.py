"""What flips cost at prediction (``predict --tta``): one 2-D section and one volume, with and without, interleaved.

The ratio against the single pass of the same model in the same process (``profiling.interleaved_seconds``: medians,
alternating, after a warm-up): 4 passes in 2-D, 8 in 3-D, less what the passes share (padding, blending). Each
predictor is prepared once (model read, batch norm folded), so only prediction is timed. The 2-D model is a trained
checkpoint; the 3-D one is a UNet++ 16-128 with random weights (the time does not depend on them).

    .venv/bin/python benchmarks/bench_tta.py --checkpoint runs/isbi/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import unetpp
from unetpp.data.io import read_image
from unetpp.data.transforms import zscore
from unetpp.deploy.backends import predictor
from unetpp.inference import PredictOptions
from unetpp.profiling import interleaved_seconds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES = (("one pass", False), ("with flips", True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a trained 2-D model (a run's best.ckpt)")
    p.add_argument("--image", type=Path, default=SHARED / "isbi2012-em" / "images" / "20.png")
    p.add_argument("--volume", type=Path, default=SHARED / "msd-hippocampus" / "imagesTr" / "hippocampus_004.nii.gz")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    image, volume = zscore(read_image(args.image, spatial_dims=2)), zscore(read_image(args.volume, spatial_dims=3))
    model_3d = unetpp.build_model("unet++", spatial_dims=3, widths=[16, 32, 64, 128], depth=3, classes=3)
    print(f"{torch.get_num_threads()} threads")
    for name, model, x in ((args.image.name, args.checkpoint, image), (args.volume.name, model_3d, volume)):
        runs = {label: predictor(model, PredictOptions(tta=tta)) for label, tta in MODES}
        t = interleaved_seconds({k: lambda p=p, x=x: p(x) for k, p in runs.items()}, args.reps)
        shape = "x".join(map(str, x.shape[1:]))
        ratio = t["with flips"] / t["one pass"]
        print(f"{name} ({shape}): one pass {t['one pass']:.3f} s, with flips {t['with flips']:.3f} s, {ratio:.1f}x")


if __name__ == "__main__":
    main()
