"""Scoring tables: the paper's semantic metrics per image and mode (:mod:`.semantic`), and the instance
columns of Table V for detectors and semantic models alike (:mod:`.instances`)."""
