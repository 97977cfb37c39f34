"""An offline Hugging Face cache that tests fill themselves, laid out as huggingface_hub lays it out.

``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (relative symlinks to the blobs) and
``refs/<branch>`` (the commit): ``snapshot_download`` with ``HF_HUB_OFFLINE=1`` reads exactly this.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def go_offline(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``HF_HUB_OFFLINE=1`` and the cache in `cache`, for this process (constants) and its children (env)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    cache.mkdir(parents=True, exist_ok=True)
    for name, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", str(cache)), ("HF_HOME", str(cache.parent))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT, ref: str = "main") -> Path:
    """Copy the files of `folder` into the cache as revision `commit` of `repo_id` (with `ref` pointing to it)."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return snapshot
