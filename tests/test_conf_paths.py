"""The shared local infrastructure under conf/: the cache folder, model names, device and precision choice, usable by
the backends and by training alike, and importable without torch, transformers or Hydra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conf.devices import pick_device, pick_dtype, pick_inference_dtype
from conf.paths import cache_dir, resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_paths_and_devices_loads_nothing_heavy() -> None:
    code = ("import sys, conf.paths, conf.devices; "
            "print(sorted(m for m in ('torch', 'transformers', 'hydra', 'filelock') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cache_dir_follows_sa_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SA_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    assert resolve_model_path("some/hub-model") == "some/hub-model"  # only the embedded alias is resolved


def test_device_and_precision_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype("bf16", "cpu") is torch.bfloat16 and pick_dtype("float16", "cpu") is torch.float16
    assert pick_dtype("auto", "cpu") is torch.float32  # training numerics on a CPU
    assert pick_inference_dtype("fp32", "cpu") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int3'; use one of auto, bf16, bfloat16"):
        pick_dtype("int3", "cpu")
