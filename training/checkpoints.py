"""sa-train's resumable states: written whole or not at all, and resumed only by the run that wrote them.

A state is saved into `checkpoints/.step-N.partial` and renamed to `checkpoints/step-N` once complete, with
`run.json` (the run's fingerprint) written last; a save cut short (Ctrl-C, a crash) leaves only the staging folder,
which the next run removes. `step-N` folders written by an older sa-train (no `run.json`) count as complete when
accelerate's last file (`custom_checkpoint_0.pkl`) is there; one without it is skipped, with a notice.

The fingerprint holds what defines a run: the data's content (SHA-256), the loss and its parameters, the model (name,
LoRA), the optimizer and LR schedule (lr, scheduler, warmup, weight decay, clipping, the schedule's length in steps),
the batch (groups per step, K), the seed and the token limits. A resume with another fingerprint refuses in one line
naming what differs. What may change on resume, because it does not change what the run computes: output paths,
`train.log_every`, `save_every`, `resume`, `num_workers`, `peak_tflops`, `trace`, `max_tokens_per_forward`,
`share_prompt`, `groups_per_batch` (how a step is split into micro-batches), `model.device`, `model.precision`,
`model.gradient_checkpointing`, `model.lora.merge` and the number of processes. `train.max_steps`/`epochs` set the
length of a decaying LR schedule, so extending a run changes it and is refused, except with `train.scheduler=constant`
or `constant_with_warmup`, where the length is not part of the fingerprint.

A `step-N` without a fingerprint (older sa-train) is never resumed by `train.resume=auto`, since it cannot be told
apart from another run's; `train.resume=<its path>` resumes it as it is (the user vouches for the settings).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from conf import changed
from conf.errors import require, require_writable
from memory.atomic import atomic_write_bytes, fsync_dir, fsync_tree
from training.dataset import resolve_data_file, short_json

if TYPE_CHECKING:
    from accelerate import Accelerator

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"  # the fingerprint, written last: a step-N folder with it is complete
LAST_FILE = "custom_checkpoint_0.pkl"  # accelerate's save_state writes the registered objects last
STAGING = re.compile(r"\.step-(\d+)\.(partial|old)")
FORMAT = 1
# The schedulers whose LR does not depend on the run's length: extending such a run keeps it the same run.
LENGTH_FREE = ("constant", "constant_with_warmup")


@dataclass(frozen=True)
class Checkpoint:
    """A complete `step-N` folder; `run` is its fingerprint, None for one saved by an older sa-train."""

    path: Path
    step: int
    run: dict[str, Any] | None


def data_digest(path: Path) -> str:
    """SHA-256 of a data file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(cfg: DictConfig, loss_params: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """What defines the run (see the module docstring), as flat `key: value` pairs named after the config keys."""
    t, lora = cfg.train, cfg.model.lora
    run: dict[str, Any] = {
        "data": data_digest(resolve_data_file(cfg.data)),
        "model.name": str(cfg.model.name),
        "loss.name": cfg.loss.name,
    }
    run.update({f"loss.{key}": value for key, value in loss_params.items()})
    run["model.lora"] = (
        {key: lora[key] for key in ("r", "alpha", "dropout", "target_modules")} if lora.enabled else False
    )
    # The global batch decides the run; groups_per_batch (not here) only splits it.
    keys = ("group_size", "batch_size", "seed", "lr", "scheduler", "warmup_ratio", "weight_decay", "max_grad_norm",
            "max_length", "max_prompt_length")  # fmt: skip
    run.update({f"train.{key}": t[key] for key in keys})
    if t.scheduler not in LENGTH_FREE:
        run["train.max_steps|epochs"] = int(total_steps)  # the LR schedule's length in optimizer steps
    return OmegaConf.to_container(OmegaConf.create(run), resolve=True)  # type: ignore[return-value]


def _show(key: str, value: Any) -> str:
    if value is None:
        return "unset"
    return f"{value[:12]}…" if key == "data" and isinstance(value, str) else short_json(value)


def inspect(path: Path) -> Checkpoint | str:
    """A complete checkpoint folder, or why it is not one."""
    match = re.fullmatch(r"step-(\d+)", path.name)
    step = int(match.group(1)) if match else -1
    run_file = path / RUN_FILE
    if run_file.is_file():
        try:
            return Checkpoint(path, step, dict(json.loads(run_file.read_text(encoding="utf-8"))["run"]))
        except (ValueError, KeyError, TypeError):
            return f"its {RUN_FILE} is unreadable"
    if (path / LAST_FILE).is_file() and (path / LAST_FILE).stat().st_size > 0:
        return Checkpoint(path, step, None)
    return f"incomplete: a save cut short, no {LAST_FILE}"


def scan(output_dir: Path, clean: bool = False) -> tuple[list[Checkpoint], list[tuple[Path, str]]]:
    """The complete `step-N` folders (by step) and the folders skipped with why; `clean` removes unfinished saves."""
    folder = output_dir / CHECKPOINTS
    complete: list[Checkpoint] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if match := STAGING.fullmatch(path.name):
            if match.group(2) == "partial":
                skipped.append((path, "a save cut short" + (", removed" if clean else "")))
            if clean:
                shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and re.fullmatch(r"step-(\d+)", path.name):
            found = inspect(path)
            if isinstance(found, Checkpoint):
                complete.append(found)
            else:
                skipped.append((path, found))
    complete.sort(key=lambda c: c.step)
    return complete, skipped


def resume_from(
    resume: Any, output_dir: Path, run: dict[str, Any], say: Callable[[str], None], main: bool
) -> Path | None:
    """The checkpoint to resume (`train.resume`: auto | null | a path), checked against this run's fingerprint.

    `auto` takes the latest complete `step-N` and says which unfinished ones it skipped. A checkpoint of another run,
    an incomplete one asked for by path, or (under auto) one without a fingerprint is a one-line `UserError`.
    """
    if resume in (None, False, "null", "none"):
        return None
    if resume == "auto":
        complete, skipped = scan(output_dir, clean=main)
        for path, why in skipped:
            say(f"sa-train: skipped {path} ({why})")
        if not complete:
            return None
        found: Checkpoint | str = complete[-1]
    else:
        path = Path(str(resume))
        require(
            path.is_dir(), f"train.resume={resume} is not a checkpoint folder; use auto, null or checkpoints/step-N"
        )
        found = inspect(path)
        require(isinstance(found, Checkpoint), f"train.resume={resume} cannot be resumed ({found}); "
                                                "pick another checkpoints/step-N or use auto")  # fmt: skip
    assert isinstance(found, Checkpoint)
    if found.run is None:
        require(
            resume != "auto",
            f"{found.path} has no run fingerprint (saved by an older sa-train), so it may be another run's; "
            f"to continue it with the settings it was made with pass train.resume={found.path}, to start over use "
            "train.resume=null or a new hydra.run.dir",
        )
        say(f"sa-train: {found.path} has no run fingerprint (older sa-train); resuming it as train.resume asks")
        return found.path
    changes = [f"{key} ({_show(key, saved)} → {_show(key, now)})" for key, saved, now in changed(found.run, run)]
    require(
        not changes,
        f"{found.path} belongs to another run: {', '.join(changes)}; resume with the same settings, or start over "
        "with train.resume=null or a new hydra.run.dir (to fine-tune a finished model further, pass model.name=<its "
        "folder>)",
    )
    return found.path


def save(accelerator: Accelerator, output_dir: Path, step: int, run: dict[str, Any]) -> Path:
    """`accelerator.save_state` into a staging folder, then `run.json`, then rename it to `checkpoints/step-N`."""
    folder = output_dir / CHECKPOINTS
    final, staging = folder / f"step-{step}", folder / f".step-{step}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()  # every process has written its part
    if accelerator.is_main_process:
        record = {"format": FORMAT, "step": step, "run": run}
        atomic_write_bytes(staging / RUN_FILE, (json.dumps(record, indent=1) + "\n").encode())
        fsync_tree(staging)
        old = folder / f".step-{step}.old"
        if final.exists():  # a resume from an earlier checkpoint passes this step again
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(staging, final)
        fsync_dir(folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_writable(path: Path, key: str) -> None:
    """A one-line `UserError` unless `path` is (or can be created as) a folder this process can write."""
    path = Path(path).expanduser()
    probe = next((folder for folder in (path, *path.parents) if folder.exists()), Path(path.anchor or "."))
    fix = f"choose a writable folder ({key}=...)"
    require(probe.is_dir(), f"{key}={path} cannot be created: {probe} is not a folder; {fix}")
    if probe != path:
        require(os.access(probe, os.W_OK | os.X_OK), f"{key}={path} cannot be created: {probe} is read-only; {fix}")
        return
    require_writable(path, f"{key}={path}", fix)
