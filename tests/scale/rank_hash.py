"""The CLI, plus a test-only callback: each rank writes a hash of its weights at the end of training.

Run as a script (``python rank_hash.py train ...``): Lightning's launcher re-runs this same file for
rank 1, so both ranks carry the callback. The hashes land next to the run folder.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import lightning as L

import unetpp.engine.train as train
from unetpp.cli.main import main


class HashWeights(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        path = self.out.parent / f"{self.out.name}.rank{trainer.global_rank}.sha256"
        path.write_text(f"{digest.hexdigest()} {trainer.current_epoch} {trainer.world_size}\n")


def build_trainer(cfg, run_dir, has_val, budget=None):  # noqa: ANN001, ANN201
    trainer = original(cfg, run_dir, has_val, budget)
    trainer.callbacks.append(HashWeights(Path(run_dir)))
    return trainer


original = train.build_trainer
train.build_trainer = build_trainer

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
