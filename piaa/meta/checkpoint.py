"""Meta-training checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint directory holds `state-<step>.safetensors` and `checkpoint.json`, which names the
current tensor file and its SHA-256. The tensor file is written (temp file, fsync, rename) before the
JSON that points to it, so a crash at any moment leaves the previous complete checkpoint readable.

Random state: the meta-training loop derives every random draw of a meta-step from (seed, step)
(`piaa.seeding`), so the step counter is the whole RNG state; it is recorded with a fingerprint of
the config so a checkpoint is never resumed under a different configuration or seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load, save

from piaa.atomic import write_bytes, write_json
from piaa.errors import RunError

INDEX = "checkpoint.json"


def save_checkpoint(directory: str | Path, step: int, tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> Path:
    """Write one checkpoint and drop the older tensor files. Returns the tensor file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    name = f"state-{step:08d}.safetensors"
    write_bytes(directory / name, blob)
    write_json(directory / INDEX, {"step": step, "file": name, "sha256": hashlib.sha256(blob).hexdigest(), **info})
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / name


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The latest checkpoint in `directory` as (tensors, info), or None when there is none."""
    directory = Path(directory)
    index = directory / INDEX
    if not index.is_file():
        return None
    try:
        info = json.loads(index.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{index}: not UTF-8 text, so not a piaa checkpoint (delete {directory} to start over)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{index} line {exc.lineno}: not valid JSON ({exc.msg}) (delete {directory} to start over)") from None
    except RecursionError:
        raise RunError(f"{index}: nested too deeply to be a piaa checkpoint (delete {directory} to start over)") from None
    required = {"step": int, "file": str, "sha256": str}
    if not isinstance(info, dict) or not all(isinstance(info.get(k), t) for k, t in required.items()):
        raise RunError(f"{index}: expected a JSON object with step, file and sha256 (delete {directory} to start over)")
    tensor_file = directory / info["file"]
    if tensor_file.parent != directory or not tensor_file.is_file():
        raise RunError(f"{index} names {tensor_file.name}, which is missing (delete {directory} to start over)")
    blob = tensor_file.read_bytes()
    if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
        raise RunError(f"{tensor_file}: checksum does not match {INDEX} (delete {directory} to start over)")
    return load(blob), info


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able mapping (config + seed + data) that a resume must match."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
