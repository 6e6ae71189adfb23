"""sa-train on a tiny random Llama: every loss from the same data, LoRA, resume, TensorBoard, device/precision, sweeps."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from conf.errors import UserError
from tests.conftest import build_fixture_data
from training.dataset import load_groups
from training.train import train, validate

TRAINING = Path(__file__).resolve().parent.parent / "training"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = build_fixture_data(tmp_path_factory.mktemp("train-data"))  # 11 groups, 23 responses
    return out


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def run(tmp: Path, data: Path, model: Path, *overrides: str) -> dict:
    cfg = compose(
        f"data={data}", f"model.name={model}", f"output_dir={tmp}", "train.batch_size=2", "train.groups_per_batch=2",
        "train.max_steps=2", "train.lr=1e-3", "train.max_length=128", "train.max_prompt_length=96", *overrides,
    )  # fmt: skip
    return train(cfg)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_pretrained(folder).state_dict().items()}


def changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss", ["stable_alignment", "sft", "dpo", "simpo"])
def test_every_loss_trains_from_the_same_data(loss, tmp_path, data_dir, tiny_model_dir):
    summary = run(tmp_path, data_dir, tiny_model_dir, f"loss={loss}")
    assert summary["steps"] == 2 and summary["start_step"] == 0
    assert torch.isfinite(torch.tensor(summary["final"]["loss"]))
    assert changed(weights(tiny_model_dir), weights(tmp_path))  # AutoModelForCausalLM loads the checkpoint
    assert (tmp_path / "tokenizer_config.json").is_file() and (tmp_path / "summary.json").is_file()


def test_tensorboard_scalars_and_no_mfu_on_cpu(tmp_path, data_dir, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path, data_dir, tiny_model_dir, "loss=stable_alignment", "train.max_steps=3")
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    tags = set()
    for event in events:
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    expected = {"loss", "loss/nll_best", "loss/penalty", "loss/active_margin_frac", "loss/gap"}
    assert expected | {"throughput/tokens_per_s", "throughput/samples_per_s", "lr"} <= tags
    assert "throughput/mfu" not in tags  # CPU: no known peak, so no MFU


def test_lora_checkpointing_bf16_saves_a_merged_plain_checkpoint(tmp_path, data_dir, tiny_model_dir):
    summary = run(
        tmp_path, data_dir, tiny_model_dir, "model.lora.enabled=true", "model.lora.r=4",
        "model.gradient_checkpointing=true", "model.precision=bf16", "train.lr=1e-2",
    )  # fmt: skip
    assert summary["mixed_precision"] == "bf16" and summary["device"] == "cpu"
    assert not (tmp_path / "adapter_config.json").exists()  # merged: loads without peft
    trained = weights(tmp_path)
    assert not any("lora" in key for key in trained)
    assert changed(weights(tiny_model_dir), trained)


def test_dpo_with_lora_uses_the_adapter_free_base_as_reference(tmp_path, data_dir, tiny_model_dir):
    summary = run(
        tmp_path, data_dir, tiny_model_dir, "loss=dpo", "model.lora.enabled=true", "model.lora.r=4",
        "train.max_steps=1", "train.batch_size=11", "train.groups_per_batch=11",
    )  # fmt: skip
    # first step: LoRA's B starts at zero, so policy == reference and the DPO term is exactly log 2
    assert summary["final"]["loss/preference"] == pytest.approx(math.log(2), abs=1e-5)
    assert summary["final"]["loss/reward_margin"] == pytest.approx(0.0, abs=1e-4)


def test_device_and_precision_selection_without_a_gpu(monkeypatch):
    from training import modeling
    from training.throughput import Throughput, peak_tflops

    cpu = torch.device("cpu")
    assert modeling.pick_device("auto").type in ("cpu", "mps")
    assert modeling.mixed_precision("auto", cpu) == "no"
    assert modeling.mixed_precision("bf16", cpu) == "bf16"
    assert peak_tflops(cpu) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = modeling.pick_device("auto")
    assert cuda.type == "cuda"
    assert modeling.mixed_precision("auto", cuda) == "bf16"
    assert modeling.mixed_precision("fp32", cuda) == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert modeling.mixed_precision("auto", cuda) == "no"  # e.g. a V100: fp32 rather than silent fp16
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    assert peak_tflops(cuda) == 989.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some Future GPU")
    assert peak_tflops(cuda) is None and peak_tflops(cuda, 100.0) == 100.0
    meter = Throughput(n_params=1_000_000, peak=100.0)
    meter.add(tokens=50_000, samples=10)
    meter.start -= 1.0  # pretend ≥ 1 s elapsed
    rates = meter.tick()
    assert rates["mfu"] == pytest.approx(6 * 1e6 * rates["tokens_per_s"] / 100e12)
    assert "mfu" not in Throughput(n_params=1, peak=None).tick()


def test_nothing_is_hard_coded_to_cuda_or_llama():
    for path in TRAINING.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\.cuda\(|device=['\"]cuda|LlamaForCausalLM", text), path
        assert "set_detect_anomaly(True)" not in text, path


def test_bad_config_and_data_are_one_line_user_errors(tmp_path, data_dir):
    with pytest.raises(UserError, match="loss.margin"):
        validate(compose(f"data={data_dir}", "loss.margin=-1", "output_dir=x"))
    with pytest.raises(UserError, match="group_size"):
        validate(compose(f"data={data_dir}", "train.group_size=0", "output_dir=x"))
    with pytest.raises(UserError, match=r"^loss\.ties='maybe' must be one of include, exclude$"):
        validate(compose(f"data={data_dir}", "loss.ties=maybe", "output_dir=x"))
    assert validate(compose(f"data={data_dir}", "output_dir=x")).ties == "exclude"  # the default
    assert validate(compose(f"data={data_dir}", "loss.ties=include", "output_dir=x")).ties == "include"
    row = json.loads((data_dir / "train.jsonl").read_text().splitlines()[0])
    row["responses"][0]["rating"] = None
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="not a number"):
        load_groups(bad)
    with pytest.raises(UserError, match="sa-build-data"):
        load_groups(tmp_path / "empty-folder-that-is-missing")


def test_out_of_scale_and_non_finite_ratings_are_one_line_errors(tmp_path, data_dir):
    from datasets import Dataset

    from training.dataset import check_ratings

    rows = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()[:3]]
    for value in (8, -1, 0.5, 7.01):  # the reference's placeholders (8, −1) and values just off the scale
        rows[1]["responses"][-1]["rating"] = value
        bad = tmp_path / f"bad-{value}.jsonl"
        bad.write_text("".join(json.dumps(row) + "\n" for row in rows))
        with pytest.raises(
            UserError, match=rf"^{re.escape(str(bad))}:2: response rating {re.escape(repr(value))} is outside 1\.\.7"
        ) as error:
            load_groups(bad)
        assert "\n" not in str(error.value)
    for value in (float("nan"), float("inf")):  # JSON has no NaN/inf: check the rows as datasets holds them
        rows[1]["responses"][-1]["rating"] = value
        with pytest.raises(
            UserError, match=rf"x\.jsonl:2: response rating {value!r} is outside 1\.\.7 \(or not finite\)"
        ):
            check_ratings(Dataset.from_list(rows), Path("x.jsonl"))
    rows[1]["responses"][-1]["rating"] = 4.25  # a float on the scale is a rating
    check_ratings(Dataset.from_list(rows), Path("x.jsonl"))


def test_tied_data_prints_the_noise_warning_and_data_with_gaps_does_not(tmp_path, data_dir, tiny_model_dir, capsys):
    rows = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    tied = tmp_path / "tied" / "train.jsonl"
    tied.parent.mkdir()
    for row in rows:
        for response in row["responses"]:
            response["rating"] = 1  # the embedded model before the rater fix
    tied.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run(tmp_path / "a", tied.parent, tiny_model_dir, "train.max_steps=1")
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("sa-train: warning: the ratings")
    ]
    assert len(warnings) == 1
    assert warnings[0].startswith("sa-train: warning: the ratings carry little signal (100% of groups tied")
    run(tmp_path / "b", data_dir, tiny_model_dir, "train.max_steps=1")  # the fixture's ratings have real gaps
    assert "sa-train: warning: the ratings" not in capsys.readouterr().err


def sa_train() -> list[str]:
    """The installed console script, or the same entry point through the interpreter."""
    script = Path(sys.executable).parent / "sa-train"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "training.train"]


def test_console_script_sweeps_margin_and_lambda(tmp_path, data_dir, tiny_model_dir):
    sweep = tmp_path / "sweep"
    command = [
        *sa_train(), "-m", f"data={data_dir}", f"model.name={tiny_model_dir}",
        "loss.margin=0.5,1", "loss.lam=0,0.2", "train.max_steps=1", "train.batch_size=2",
        "train.max_length=128", "train.max_prompt_length=96", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        assert (job / "model.safetensors").is_file() and json.loads((job / "summary.json").read_text())["steps"] == 1
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        seen.add((cfg.loss.margin, cfg.loss.lam))
    assert seen == {(0.5, 0), (0.5, 0.2), (1, 0), (1, 0.2)}
    bad = subprocess.run(
        [*sa_train(), f"data={data_dir}", "loss.margin=-1", f"hydra.run.dir={tmp_path}/x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "sa-train: error: loss.margin" in bad.stderr


def test_shared_prompt_layout_only_where_the_attention_takes_a_custom_mask(tiny_model_dir, capsys):
    from transformers import AutoModelForCausalLM

    from training.train import share_prompt

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    on, off = (OmegaConf.create({"train": {"share_prompt": value}}) for value in (True, False))
    assert share_prompt(on, model) and not share_prompt(off, model)
    model.config._attn_implementation = "flash_attention_2"  # takes no 4D mask: one row per response
    assert not share_prompt(on, model)
    assert "flash_attention_2 attention takes no custom mask; train.share_prompt off" in capsys.readouterr().out


def trace(folder: Path) -> list[dict]:
    """The `train.trace=true` records of every process (one per micro-batch)."""
    return [json.loads(line) for path in sorted((folder / "trace").glob("rank-*.jsonl")) for line in path.open()]


def test_resume_in_a_later_epoch_matches_an_uninterrupted_run(tmp_path, data_dir, tiny_model_dir):
    """Resuming in epoch 2 of 3 continues from the saved step with epoch 2's order and K-samples, as the
    uninterrupted run does (accelerate's prepared loader used to reset the dataset to epoch 0 in a new process)."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    setup = "train.batch_size=6", "train.groups_per_batch=6", "train.max_steps=-1", "train.epochs=3", "train.trace=true"
    first = run(full, data_dir, tiny_model_dir, *setup, "train.save_every=5")  # 2 steps per epoch: 5 is in epoch 2
    assert first["start_step"] == 0 and first["steps"] == 6 and first["epochs_done"] == 3
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-5", "step-6"]
    shutil.copytree(full / "checkpoints" / "step-5", resumed / "checkpoints" / "step-5")
    second = run(resumed, data_dir, tiny_model_dir, *setup)
    assert second["start_step"] == 5 and second["steps"] == 6 and second["epochs_done"] == 3
    later = [r for r in trace(full) if r["step"] >= 5]
    assert trace(resumed) == later and {r["epoch"] for r in later} == {2}
    epochs = {e: [r["picks"] for r in trace(full) if r["epoch"] == e] for e in (0, 2)}
    assert epochs[0] != epochs[2]  # the epochs differ, so replaying epoch 0 would show
    a, b = weights(full), weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    third = run(tmp_path / "fresh", data_dir, tiny_model_dir, "train.max_steps=1", "train.resume=null")
    assert third["start_step"] == 0


def test_truncation_is_counted_in_the_warning_log_and_summary(tmp_path, data_dir, tiny_model_dir, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run(
        tmp_path, data_dir, tiny_model_dir, "train.max_length=40", "train.max_prompt_length=30", "train.max_steps=1"
    )
    data, trained = summary["truncation"]["data"], summary["truncation"]["trained"]
    assert data["prompts"] == 11 and data["responses"] == 23  # every group and response of the data
    assert data["prompts_cut"] > 0 and data["responses_lost_end"] > 0
    assert trained["responses"] == 4 and trained["prompts"] == 2  # the one step trained: 2 groups × K ≤ 3
    assert 0 < trained["responses_lost_end"] <= trained["responses_cut"] <= trained["responses"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sa-train: warning: at")]
    assert len(warnings) == 1
    assert f"{data['responses_lost_end']} of them lose their end (end-of-turn token)" in warnings[0]
    accumulator = EventAccumulator(str(next((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))))
    accumulator.Reload()
    assert accumulator.Scalars("cut/responses_lost_end")[0].value == trained["responses_lost_end"]
    capsys.readouterr()
    run(
        tmp_path / "roomy", data_dir, tiny_model_dir, "train.max_length=1024", "train.max_prompt_length=512",
        "train.max_steps=1",
    )  # fmt: skip
    assert "sa-train: warning: at" not in capsys.readouterr().err  # nothing cut, nothing said


def test_the_default_batch_is_the_reference_64_groups_on_any_hardware():
    from training.train import Schedule

    t = compose("data=x", "output_dir=x").train
    assert (t.batch_size, t.lr, t.scheduler, t.warmup_ratio, t.epochs, t.max_length) == (
        64,
        2e-5,
        "cosine",
        0.03,
        2,
        480,
    )
    one, eight = Schedule.of(t, groups=130, processes=1), Schedule.of(t, groups=130, processes=8)
    assert (one.accum, eight.accum) == (16, 2)  # 64 = 16 × 4 groups on one process = 2 × 4 groups × 8 processes
    assert one.steps_per_epoch == eight.steps_per_epoch == 3 and one.total_steps == eight.total_steps == 6
    demo = (Path(__file__).resolve().parent.parent / "scripts" / "demo.py").read_text()
    assert '"train.batch_size=4"' in demo  # the 2-core CPU demo keeps 4 groups per step


@settings(max_examples=200, deadline=None)
@given(
    groups=st.integers(1, 40), batch_size=st.integers(1, 20), per_forward=st.integers(1, 6),
    processes=st.integers(1, 4), losses=st.lists(st.floats(0, 10), min_size=40, max_size=40),
)  # fmt: skip
def test_every_group_once_per_epoch_with_equal_weight(groups, batch_size, per_forward, processes, losses):
    from training.dataset import epoch_plan
    from training.train import Schedule

    t = OmegaConf.create({"batch_size": batch_size, "groups_per_batch": per_forward, "max_steps": -1, "epochs": 1})
    schedule = Schedule.of(t, groups, processes)
    plan = epoch_plan(groups, schedule.batch_size, schedule.processes * schedule.accum)
    assert len(plan) == schedule.steps_per_epoch == math.ceil(groups / batch_size)
    seen = []
    for step in plan:
        per_rank = [schedule.micro_batches(step, rank) for rank in range(processes)]
        assert all(len(micro) == schedule.accum for micro in per_rank)  # every process syncs every step
        micro = [mb for rank in per_rank for mb in rank]
        assert all(len(positions) <= per_forward for positions, _ in micro)
        real = [(positions, weight) for positions, weight in micro if weight > 0]
        seen += [p for positions, _ in real for p in positions]
        # DDP averages over processes and accumulation divides by accum: Σ weight · micro mean / (N · accum) is the
        # step's mean loss over its groups
        mean = sum(w * sum(losses[p] for p in ps) / len(ps) for ps, w in real) / (processes * schedule.accum)
        step_groups = [p for ps, _ in real for p in ps]
        assert mean == pytest.approx(sum(losses[p] for p in step_groups) / len(step_groups))
    assert sorted(seen) == list(range(groups))
