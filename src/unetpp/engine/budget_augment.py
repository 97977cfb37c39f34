"""Augmentation a wall-clock budget can afford: under ``--minutes``, a run that buys few steps trains without it.

Augmentation pays over long training (the paper's hundreds of epochs, nnU-Net's 250,000 steps). In the few hundred
steps a short budget buys on a CPU it cost held-out accuracy (2-core CPU with bf16, UNet++ with defaults otherwise;
``benchmarks/RESULTS.md``, issue 19, session 18): on the hippocampus 6 to 9.5 Dice points at 6 minutes (2 seeds)
and 2.0 at 15 minutes (713 and 729 steps: not a matter of speed); DSB 2018 +1.2 / +0.4 IoU (both significant over
the held-out images), ISBI +0.4 (one seed, not significant). Most likely, in 3D above all, flipped and rotated
volumes are anatomy the data never holds, which a short run spends its steps learning. So when the user sets no
augmentation and the planned model's step buys fewer than ``AUGMENT_FROM_STEPS`` steps, the plan sets
``data.augment=none``; longer budgets keep ``light``, and ``--set data.augment=light`` (or ``full``) keeps
augmentation whatever the budget.
"""

from __future__ import annotations

import dataclasses

from ..plan.record import Plan

AUGMENT_FROM_STEPS = 800  # none won at every budget measured, up to the 747 steps planned at 15 min (hippocampus)


def augment_for(plan: Plan, minutes: float, steps: int) -> Plan:
    """`plan` with the augmentation `steps` (what `minutes` buy with its model) can afford, and why."""
    bought = f"{minutes:g} min buy about {steps} steps here"
    if steps < AUGMENT_FROM_STEPS:
        augment, reason = "none", f"{bought}: too few for augmentation to pay (< {AUGMENT_FROM_STEPS})"
    else:
        augment, reason = "light", f"{bought} (>= {AUGMENT_FROM_STEPS}): flips, rotations, intensity"
    return dataclasses.replace(plan, augment=augment, reasons={**plan.reasons, "augment": reason})
