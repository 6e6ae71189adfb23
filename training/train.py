"""`sa-train`: fine-tune any HF causal LM on `sa-build-data` output with the loss picked by `loss=...`.

Accelerate-native: the same code runs on CPU, one GPU, or `accelerate launch --config_file conf/accelerate/<x>.yaml
-m training.train ...` (DDP, FSDP, DeepSpeed). Nothing is placed on a device by hand and anomaly detection stays off.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import send_to_device, set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel, get_scheduler

from conf import flatten
from conf.cli import hydra_command, save_hydra_config
from conf.errors import UserError, require
from conf.paths import ALIASES, resolve_model_path
from conf.schema import checked
from conf.schema.training import Loss, TrainApp, as_app
from environment.signal import group_signal, noise_warning
from memory.atomic import fsync_tree
from training import checkpoints
from training.collator import CUT_KEYS, GroupCollator
from training.dataset import GroupDataset, epoch_plan, load_groups, tokenize_groups
from training.logprobs import attention_implementation, response_stats, supports_shared_prompt
from training.losses import LOSSES, SELECT_ALL
from training.modeling import load_tokenizer, mixed_precision, pick_device
from training.throughput import Throughput, peak_tflops

ALL_RESPONSES = 1 << 30


class TrainState:
    """Progress saved with every checkpoint (optimizer steps, epoch, micro-batches done in the epoch)."""

    def __init__(self) -> None:
        self.step, self.epoch, self.batches = 0, 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step, self.epoch, self.batches = int(state["step"]), int(state["epoch"]), int(state["batches"])


def check_model_name(name: Any) -> None:
    """`model.name` is the embedded alias, a model folder or a hub id (`org/name`); a missing path is an error."""
    text = str(name)
    fix = "pass a Hugging Face model folder (with config.json), a hub id or embedded:smollm2"
    if text in ALIASES or text.startswith("embedded:"):
        return
    path = Path(text).expanduser()
    if path.exists():
        require((path / "config.json").is_file(), f"model.name={text} is not a model folder (no config.json); {fix}")
        return
    looks_like_path = path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1
    require(not looks_like_path, f"model.name={text}: no such folder; {fix}")


def validate(cfg: DictConfig) -> Loss:
    """Check every value before loading anything (the schema's types and checks, the model name, a writable output
    folder); return the loss config. Each problem is a one-line `UserError` naming the key."""
    app = checked(as_app(cfg, TrainApp))
    check_model_name(app.model.name)
    checkpoints.check_writable(Path(app.output_dir), "output_dir")
    return app.loss


def build_accelerator(cfg: DictConfig, output_dir: Path) -> Accelerator:
    """Device and precision from config (`auto` picks cuda > mps > cpu and bf16 where the GPU supports it)."""
    device = pick_device(cfg.model.device)
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=mixed_precision(cfg.model.precision, device),
        step_scheduler_with_optimizer=False,  # sa-train steps it once per optimizer step (see `Schedule`)
        log_with="tensorboard",
        project_dir=str(output_dir),
    )


def load_model(cfg: DictConfig) -> PreTrainedModel:
    """The policy in fp32 master weights (mixed precision autocasts), with LoRA and checkpointing if asked."""
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.name), dtype=torch.float32)
    model.config.use_cache = False
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = cfg.model.lora
        config = LoraConfig(
            task_type="CAUSAL_LM", r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
            target_modules=OmegaConf.to_container(lora.target_modules) if OmegaConf.is_list(lora.target_modules) else lora.target_modules,
        )  # fmt: skip
        model = get_peft_model(model, config)
    return model


def share_prompt(cfg: DictConfig, model: torch.nn.Module) -> bool:
    """`train.share_prompt`, where the model can take it (sdpa/eager attention); otherwise one row per response."""
    if not cfg.train.share_prompt:
        return False
    if supports_shared_prompt(model):
        return True
    implementation = attention_implementation(model)
    print(f"sa-train: {implementation} attention takes no custom mask; train.share_prompt off (one row per response)")
    return False


def load_reference(cfg: DictConfig, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DPO's frozen reference: the LoRA policy itself with its adapter off, else a frozen copy of the initial weights
    on `device`."""
    if cfg.model.lora.enabled:
        return model
    reference = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.name), dtype=torch.float32)
    reference.requires_grad_(False)
    return reference.eval().to(device)


@dataclass(frozen=True)
class Schedule:
    """How a run walks its data. `train.batch_size` groups make one optimizer step, whatever the hardware: they are
    split over `processes × accum` micro-batches of at most `train.groups_per_batch` groups each, and every group's
    loss weighs the same (a micro-batch's mean loss is scaled by its share of the step's groups). An epoch is
    ceil(groups / batch_size) optimizer steps, each group seen exactly once across the processes. Only cfg.train
    (batch_size, epochs, max_steps) and the data decide the steps, the LR curve and which groups each step sees."""

    batch_size: int
    processes: int
    accum: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, t: DictConfig, groups: int, processes: int) -> Schedule:
        batch_size = int(t.batch_size)
        accum = math.ceil(batch_size / (int(t.groups_per_batch) * processes))
        steps_per_epoch = math.ceil(groups / batch_size)
        total = int(t.max_steps) if int(t.max_steps) > 0 else int(t.epochs) * steps_per_epoch
        return cls(batch_size, processes, accum, steps_per_epoch, total)

    def micro_batches(self, step: list[list[int]], rank: int) -> list[tuple[list[int], float]]:
        """This process's (positions, loss weight) micro-batches of one step of `epoch_plan`; an empty slot (a step
        with fewer groups than slots) is the step's first group with weight 0, so that every process still syncs."""
        n = sum(len(slot) for slot in step)
        slots = [step[m * self.processes + rank] for m in range(self.accum)]
        return [(slot, len(slot) * self.processes * self.accum / n) if slot else (step[0][:1], 0.0) for slot in slots]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run training and save a `save_pretrained` checkpoint into `output_dir`; return the summary.

    In a single process, accelerate's global state is cleared afterwards so that the next run of a Hydra sweep (or
    of a test) may pick another device or precision.
    """
    try:
        return _train(cfg)
    finally:
        if PartialState._shared_state and PartialState().num_processes == 1:
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()


def _train(cfg: DictConfig) -> dict[str, Any]:
    loss = validate(cfg)
    spec = LOSSES[loss.name]
    output_dir = Path(cfg.output_dir)
    t = cfg.train
    torch.autograd.set_detect_anomaly(False)
    accelerator = build_accelerator(cfg, output_dir)
    set_seed(int(t.seed))
    groups = load_groups(cfg.data)  # data errors surface before the model is loaded
    warning = noise_warning(group_signal([r["rating"] for r in rs] for rs in groups["responses"]), "sa-train")
    if warning and accelerator.is_main_process:
        print(warning, file=sys.stderr)
    tokenizer = load_tokenizer(cfg.model.name)
    with accelerator.main_process_first():
        # Stable Alignment samples K responses per group and epoch (SPEC §4); SFT/DPO/SimPO pick the best (and worst)
        # response of the whole group, so they see every response.
        k = int(t.group_size) if spec.select == SELECT_ALL else ALL_RESPONSES
        dataset = GroupDataset(tokenize_groups(groups, tokenizer), k, int(t.seed))
    model = load_model(cfg)
    collator = GroupCollator(
        tokenizer.pad_token_id, int(t.max_length), int(t.max_prompt_length), spec.select, share_prompt(cfg, model)
    )
    data_cut = collator.scan(dataset.rows)
    if accelerator.is_main_process and (warning := cut_warning(data_cut, t)):
        print(warning, file=sys.stderr)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=float(t.lr), weight_decay=float(t.weight_decay)
    )
    schedule = Schedule.of(t, len(dataset), accelerator.num_processes)
    accelerator.gradient_accumulation_steps = schedule.accum
    total_steps = schedule.total_steps
    scheduler = get_scheduler(
        t.scheduler,
        optimizer,
        num_warmup_steps=int(float(t.warmup_ratio) * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    reference = load_reference(cfg, model, accelerator.device) if spec.needs_reference else None
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    run = checkpoints.fingerprint(cfg, loss.params(), total_steps)
    resume = checkpoints.resume_from(cfg.train.resume, output_dir, run, accelerator.print, accelerator.is_main_process)
    if resume is not None:
        _load_state(accelerator, resume)
        accelerator.print(f"sa-train: resumed from {resume} at step {state.step}")
        if state.step >= total_steps:
            accelerator.print(f"sa-train: the run was complete ({total_steps} steps); saving its model again")
    start_step = state.step
    if accelerator.is_main_process:
        save_hydra_config(cfg)  # only now: a refused resume leaves the folder's record as it was
    accelerator.init_trackers("tensorboard", config=_flat_config(cfg))
    meter = Throughput(n_params, peak_tflops(accelerator.device, t.peak_tflops), 8.0 if reference is not None else 6.0)
    progress = tqdm(
        total=total_steps, initial=state.step, desc=f"sa-train {cfg.loss.name}", disable=not accelerator.is_main_process
    )
    trace = _trace_file(output_dir, accelerator.process_index) if t.trace else None
    last: dict[str, float] = {}
    parts_sum: dict[str, float] = {}
    cut = torch.zeros(len(CUT_KEYS), dtype=torch.long)
    cut_total = torch.zeros(len(CUT_KEYS), dtype=torch.long)
    logged_steps = 0
    model.train()
    while state.step < total_steps:
        # The epoch and the place in it follow from the step alone (not from how often a loader was iterated), so a
        # resumed run, in any epoch, sees the order and K-samples of an uninterrupted one.
        epoch, done = divmod(state.step, schedule.steps_per_epoch)
        dataset.set_epoch(epoch)
        steps = epoch_plan(len(dataset), schedule.batch_size, schedule.processes * schedule.accum)[done:]
        micro = [mb for step in steps for mb in schedule.micro_batches(step, accelerator.process_index)]
        loader = DataLoader(
            dataset, batch_sampler=[positions for positions, _ in micro], collate_fn=collator,
            num_workers=int(t.num_workers),
        )  # fmt: skip
        for (positions, weight), batch in zip(micro, loader, strict=True):
            batch = send_to_device(batch, accelerator.device)
            lr = scheduler.get_last_lr()[0]  # the LR this optimizer step applies
            with accelerator.accumulate(model):
                stats = response_stats(model, batch, reference, int(t.max_tokens_per_forward))
                out = spec.compute(stats, loss)
                accelerator.backward(out.loss * weight)
                if accelerator.sync_gradients and float(t.max_grad_norm) > 0:
                    accelerator.clip_grad_norm_(model.parameters(), float(t.max_grad_norm))
                optimizer.step()
                optimizer.zero_grad()
            if trace is not None:
                rows, picks = zip(*map(dataset.sample, positions), strict=True)
                record = {"step": state.step, "epoch": epoch, "lr": lr, "weight": weight, "rows": rows, "picks": picks}
                trace.write(json.dumps(record) + "\n")
            done = torch.tensor([batch.attention_mask.sum().item(), len(positions)], device=accelerator.device)
            meter.add(*accelerator.gather(done * (weight > 0)).reshape(-1, 2).sum(dim=0).tolist())  # tokens, groups
            if weight > 0:
                cut += batch.cut.cpu()
            for key, value in {"loss": out.loss.item(), **out.parts}.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + value * weight
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            state.step += 1
            state.epoch, in_epoch = divmod(state.step, schedule.steps_per_epoch)
            state.batches = in_epoch * schedule.accum
            logged_steps += 1
            progress.update(1)
            if state.step % int(t.log_every) == 0 or state.step == total_steps:
                slots = schedule.processes * schedule.accum * logged_steps  # the weights of a step sum to its slots
                keys = sorted(parts_sum)
                means = accelerator.reduce(torch.tensor([parts_sum[k] for k in keys], device=accelerator.device), "sum")
                counts = accelerator.reduce(cut.to(accelerator.device), "sum").cpu()
                cut_total += counts
                last = {f"loss/{k}" if k != "loss" else k: v / slots for k, v in zip(keys, means.tolist(), strict=True)}
                last.update({f"cut/{k}": float(v) for k, v in zip(CUT_KEYS, counts.tolist(), strict=True)})
                last.update({f"throughput/{k}": v for k, v in meter.tick().items()})
                last["lr"] = lr
                accelerator.log(last, step=state.step)
                progress.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['throughput/tokens_per_s']:.0f}")
                parts_sum, cut, logged_steps = {}, torch.zeros_like(cut), 0
            if t.save_every and (state.step % int(t.save_every) == 0 or state.step == total_steps):
                checkpoints.save(accelerator, output_dir, state.step, run)
            if state.step >= total_steps:
                break
    if trace is not None:
        trace.close()
    progress.close()
    save_checkpoint(cfg, accelerator, model, tokenizer, output_dir)
    accelerator.end_training()  # after the last collective: it ends the process group
    summary = {
        "loss_name": cfg.loss.name, "start_step": start_step, "steps": state.step, "epochs_done": state.epoch,
        "batch_size": schedule.batch_size, "processes": schedule.processes, "grad_accum": schedule.accum,
        "steps_per_epoch": schedule.steps_per_epoch,
        "final": last, "overall": meter.overall(), "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision, "parameters": n_params, "output_dir": str(output_dir),
        "truncation": {"data": data_cut, "trained": dict(zip(CUT_KEYS, cut_total.tolist(), strict=True))},
    }  # fmt: skip
    if accelerator.is_main_process:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def cut_warning(counts: dict[str, int], t: DictConfig) -> str | None:
    """One line when truncation cuts any prompt or response of the data (None when nothing is cut)."""
    if not (counts["prompts_cut"] or counts["responses_cut"]):
        return None
    return (
        f"sa-train: warning: at train.max_length={t.max_length}, train.max_prompt_length={t.max_prompt_length}: "
        f"{counts['prompts_cut']} of {counts['prompts']} prompts lose their start, {counts['responses_cut']} of "
        f"{counts['responses']} responses are cut, {counts['responses_lost_end']} of them lose their end "
        f"(end-of-turn token) and are trained without it, {counts['feedback_cut']} realignment targets lose part of "
        "their feedback (their revision is kept whole); raise train.max_length / train.max_prompt_length to keep them"
    )


def _trace_file(output_dir: Path, rank: int) -> Any:
    """`trace/rank-N.jsonl` in output_dir, appended to (one line per micro-batch)."""
    folder = output_dir / "trace"
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"rank-{rank}.jsonl").open("a", encoding="utf-8")


def _load_state(accelerator: Accelerator, path: Path) -> None:
    """`accelerator.load_state`, an unreadable checkpoint being a one-line error."""
    try:
        accelerator.load_state(str(path))
    except Exception as error:  # torch/safetensors/pickle raise many types for a damaged file
        raise UserError(
            f"{path} cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "remove it to resume from an earlier checkpoint, or use train.resume=null"
        ) from None


def _flat_config(cfg: DictConfig) -> dict[str, Any]:
    """Hyper-parameters for TensorBoard (scalars and strings only)."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    return {key: value for key, value in flat.items() if isinstance(value, int | float | str | bool)}


def save_checkpoint(
    cfg: DictConfig, accelerator: Accelerator, model: torch.nn.Module, tokenizer: Any, out: Path
) -> None:
    """`save_pretrained` model + tokenizer (LoRA merged when `model.lora.merge`) that AutoModelForCausalLM loads.

    Written into `out/.model.partial` first and then moved file by file (each an atomic rename), so an interrupt
    while writing leaves the previous files whole; the re-run writes them again.
    """
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    if cfg.model.lora.enabled and cfg.model.lora.merge:
        unwrapped = unwrapped.merge_and_unload()
        state_dict = None if accelerator.num_processes == 1 else unwrapped.state_dict()
    if accelerator.is_main_process:
        staging = out / ".model.partial"
        shutil.rmtree(staging, ignore_errors=True)
        unwrapped.config.use_cache = True
        unwrapped.save_pretrained(staging, state_dict=state_dict, save_function=accelerator.save)
        tokenizer.save_pretrained(staging)
        fsync_tree(staging)
        for path in sorted(staging.iterdir()):
            os.replace(path, out / path.name)
        shutil.rmtree(staging, ignore_errors=True)


@hydra_command("train", prog="sa-train")
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    try:
        summary = train(cfg)
    except torch.OutOfMemoryError as error:
        raise UserError(f"out of memory ({error}); lower train.groups_per_batch or train.max_length") from None
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, the main process says it once
        return
    overall = summary["overall"]
    mfu = f", MFU {overall['mfu']:.1%}" if "mfu" in overall else ""
    loss = summary["final"].get("loss")
    final = f"final loss {loss:.4f}" if loss is not None else "no step left to train"
    print(
        f"sa-train: {summary['loss_name']} steps {summary['start_step']}→{summary['steps']} on {summary['device']} "
        f"({summary['mixed_precision']}), {overall['tokens_per_s']:.0f} tokens/s{mfu}; "
        f"{final} → checkpoint {summary['output_dir']}"
    )


if __name__ == "__main__":
    main()
