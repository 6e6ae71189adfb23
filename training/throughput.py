"""Honest throughput accounting: tokens/s over every non-pad token processed, and MFU against a known peak.

MFU = achieved FLOP/s ÷ peak FLOP/s, with the usual estimate of 6·N FLOPs per trained token (forward + backward) and
2·N per token of a frozen reference forward (DPO). Attention FLOPs are left out, so MFU is slightly understated.
Peak figures are dense bf16 tensor-core TFLOP/s from vendor data sheets; on CPU (or an unknown GPU) MFU is only
reported when `train.peak_tflops` is set.
"""

from __future__ import annotations

import time

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """Peak dense bf16 TFLOP/s of `device` (override wins); None when unknown (CPU, unlisted GPU)."""
    if override is not None:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


class Throughput:
    """Accumulates tokens and seconds between `tick`s; reports tokens/s, samples/s and MFU."""

    def __init__(self, n_params: int, peak: float | None, flops_per_token_factor: float = 6.0) -> None:
        self.n_params = n_params
        self.peak = peak
        self.factor = flops_per_token_factor
        self.start = time.perf_counter()
        self.tokens = 0
        self.samples = 0
        self.total_tokens = 0
        self.total_seconds = 0.0

    def add(self, tokens: int, samples: int) -> None:
        self.tokens += tokens
        self.samples += samples

    def tick(self) -> dict[str, float]:
        """Rates since the last tick (and reset)."""
        now = time.perf_counter()
        seconds = max(now - self.start, 1e-9)
        rates = {"tokens_per_s": self.tokens / seconds, "samples_per_s": self.samples / seconds, "step_s": seconds}
        if self.peak:
            rates["mfu"] = self.factor * self.n_params * rates["tokens_per_s"] / (self.peak * 1e12)
        self.total_tokens += self.tokens
        self.total_seconds += seconds
        self.start, self.tokens, self.samples = now, 0, 0
        return rates

    def overall(self) -> dict[str, float]:
        """Mean rates over every tick so far."""
        tokens_per_s = self.total_tokens / max(self.total_seconds, 1e-9)
        out = {"tokens_per_s": tokens_per_s, "seconds": self.total_seconds, "tokens": float(self.total_tokens)}
        if self.peak:
            out["mfu"] = self.factor * self.n_params * tokens_per_s / (self.peak * 1e12)
        return out
