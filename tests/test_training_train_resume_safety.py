"""sa-train resumes only its own run, never a half-written checkpoint, and Ctrl-C at any point loses nothing.

Issue 18 items 2 and 3 on a tiny random Llama: a checkpoint carries the run's fingerprint (data, loss, model,
schedule) and a resume with other settings refuses in one line; checkpoints are staged and renamed when complete;
Ctrl-C (a real SIGINT to a real `sa-train` process, and interrupts at chosen points in-process) followed by a re-run
ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conf import CONFIG_DIR
from conf.errors import UserError
from tests.conftest import build_fixture_data
from training.train import train

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "train.groups_per_batch=2",
    "train.batch_size=2",
    "train.lr=1e-3",
    "train.max_length=64",
    "train.max_prompt_length=48",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = build_fixture_data(tmp_path_factory.mktemp("resume-data"))
    train_file = out / "train.jsonl"
    train_file.write_text("".join(train_file.read_text().splitlines(keepends=True)[:5]))  # 3 steps of 2 groups an epoch
    return out


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def overrides(out: Path, data: Path, model: Path, *extra: str) -> list[str]:
    return [f"data={data}", f"model.name={model}", *SMALL, *extra] + ([f"output_dir={out}"] if out else [])


def run(out: Path, data: Path, model: Path, *extra: str) -> dict:
    return train(compose(*overrides(out, data, model, *extra)))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def other_data(data_dir: Path, folder: Path) -> Path:
    """The same groups with one rating changed: other content, same shape."""
    rows = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    rows[0]["responses"][0]["rating"] = 2 if rows[0]["responses"][0]["rating"] != 2 else 3
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def sa_train(monkeypatch, *args: str) -> int:
    """`sa-train ARGS` in this process (a real Hydra app); its exit code."""
    from training.train import main

    monkeypatch.setattr(sys, "argv", ["sa-train", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        main()
    except SystemExit as exit_info:
        return int(exit_info.code)
    return 0


def test_a_resume_with_other_data_or_loss_refuses_and_writes_nothing(
    tmp_path, data_dir, tiny_model_dir, capsys, monkeypatch
):
    ck = tmp_path / "ck"
    d2 = other_data(data_dir, tmp_path / "d2")
    # the repro: `sa-train data=D1 ... train.save_every=1 hydra.run.dir=CK`, then `data=D2 loss=sft` into CK
    first = [
        *overrides(None, data_dir, tiny_model_dir, "train.max_steps=1", "train.save_every=1"),
        f"hydra.run.dir={ck}",
    ]
    assert sa_train(monkeypatch, *first) == 0
    before = {p.name: p.read_bytes() for p in [*ck.iterdir(), *(ck / ".hydra").iterdir()] if p.is_file()}
    capsys.readouterr()
    second = [*overrides(None, d2, tiny_model_dir, "loss=sft", "train.max_steps=1"), f"hydra.run.dir={ck}"]
    assert sa_train(monkeypatch, *second) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("sa-train: error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    step = ck / "checkpoints" / "step-1"
    assert errors[0].startswith(f"sa-train: error: {step} belongs to another run: data (")
    assert 'loss.name ("stable_alignment" → "sft")' in errors[0] and "loss.lam (0.2 → unset)" in errors[0]
    assert "train.resume=null or a new hydra.run.dir" in errors[0]
    # summary.json, the weights and the folder's .hydra record of its run are untouched
    assert {p.name: p.read_bytes() for p in [*ck.iterdir(), *(ck / ".hydra").iterdir()] if p.is_file()} == before
    # loss.margin is a float field: the override 2 is 2.0 (a saved 2 still equals it, so old states resume)
    with pytest.raises(UserError, match=r"belongs to another run: loss\.margin \(1\.0 → 2\.0\); resume"):
        run(ck, data_dir, tiny_model_dir, "loss.margin=2", "train.max_steps=1")
    with pytest.raises(UserError, match=r"another run: data \(\w{12}… → \w{12}…\); resume"):
        run(ck, d2, tiny_model_dir, "train.max_steps=1")
    # a longer cosine schedule is another LR curve: refused, naming the schedule's length
    with pytest.raises(UserError, match=r"another run: train\.max_steps\|epochs \(1 → 3\); "):
        run(ck, data_dir, tiny_model_dir, "train.max_steps=3")
    # what does not change the run may change: logging, saving, chunking, the micro-batch (where train.batch_size
    # sets the step's groups), output paths
    again = run(
        ck, data_dir, tiny_model_dir, "train.max_steps=1", "train.log_every=5", "train.save_every=7",
        "train.max_tokens_per_forward=0", "train.share_prompt=false", "train.groups_per_batch=1",
    )  # fmt: skip
    assert again["start_step"] == 1 and again["steps"] == 1
    # a checkpoint of an older sa-train (no run.json): auto refuses, naming it resumes it as it is
    (step / "run.json").unlink()
    with pytest.raises(UserError, match=r"has no run fingerprint .*pass train\.resume=\S+step-1, .*train\.resume=null"):
        run(ck, data_dir, tiny_model_dir, "train.max_steps=1")
    capsys.readouterr()
    named = run(ck, data_dir, tiny_model_dir, "train.max_steps=1", f"train.resume={step}")
    assert named["start_step"] == 1
    assert "no run fingerprint (older sa-train); resuming it as train.resume asks" in capsys.readouterr().out


def test_a_constant_schedule_may_be_extended(tmp_path, data_dir, tiny_model_dir):
    ck = tmp_path / "ck"
    run(ck, data_dir, tiny_model_dir, "train.max_steps=1", "train.save_every=1", "train.scheduler=constant")
    longer = run(ck, data_dir, tiny_model_dir, "train.max_steps=2", "train.scheduler=constant")
    assert longer["start_step"] == 1 and longer["steps"] == 2


def test_a_half_written_checkpoint_is_skipped_and_the_last_complete_one_resumed(
    tmp_path, data_dir, tiny_model_dir, capsys
):
    whole, ck = tmp_path / "whole", tmp_path / "ck"
    run(whole, data_dir, tiny_model_dir, "train.max_steps=3", "train.save_every=1")
    shutil.copytree(whole / "checkpoints", ck / "checkpoints")
    # step-3 as an older sa-train left it on Ctrl-C: a cut optimizer.bin, no scheduler or state files
    step3 = ck / "checkpoints" / "step-3"
    for name in ("run.json", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"):
        (step3 / name).unlink(missing_ok=True)
    optimizer = (step3 / "optimizer.bin").read_bytes()
    (step3 / "optimizer.bin").write_bytes(optimizer[: len(optimizer) // 3])
    shutil.copytree(step3, ck / "checkpoints" / ".step-4.partial")  # a staged save this version was cut short in
    capsys.readouterr()
    resumed = run(ck, data_dir, tiny_model_dir, "train.max_steps=3", "train.save_every=1")
    out = capsys.readouterr().out
    assert f"sa-train: skipped {step3} (incomplete: a save cut short, no custom_checkpoint_0.pkl)" in out
    assert f"sa-train: skipped {ck / 'checkpoints' / '.step-4.partial'} (a save cut short, removed)" in out
    assert f"sa-train: resumed from {ck / 'checkpoints' / 'step-2'} at step 2" in out
    assert resumed["start_step"] == 2 and resumed["steps"] == 3
    assert same(weights(whole), weights(ck))
    assert sorted(p.name for p in (ck / "checkpoints").iterdir()) == ["step-1", "step-2", "step-3"]
    assert (step3 / "run.json").is_file()  # written again, whole
    (step3 / "optimizer.bin").write_bytes(b"not a torch file")  # complete, then damaged: a one-line error
    with pytest.raises(UserError, match=r"step-3 cannot be loaded \(.*\); remove it to resume from an earlier") as e:
        run(ck, data_dir, tiny_model_dir, "train.max_steps=3")
    assert "\n" not in str(e.value)


SIGINT_IN_SAVE = """
import os, signal, sys
from accelerate import Accelerator

original = Accelerator.save_state


def save_state(self, output_dir=None, **kwargs):
    result = original(self, output_dir, **kwargs)
    if output_dir.endswith(os.environ["SIGINT_AFTER"]):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the state is written, not yet published
    return result


Accelerator.save_state = save_state
from training.train import main

main()
"""


def interrupt(monkeypatch, target: str, name: str, when) -> None:
    """Patch `target.name` so that it raises KeyboardInterrupt (what Ctrl-C raises) where `when(*args)` holds."""
    import importlib

    module, _, attr = target.rpartition(".")
    owner = getattr(importlib.import_module(module), attr)
    original = getattr(owner, name)

    def patched(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, patched)


def test_ctrl_c_at_several_points_then_rerun_ends_with_the_uninterrupted_weights(
    tmp_path, data_dir, tiny_model_dir, monkeypatch
):
    """5 steps over 2 epochs (3 steps each), a state every 2 steps; interrupted 4 times, then re-run to the end."""
    settings = ["train.max_steps=5", "train.save_every=2"]
    whole = run(tmp_path / "whole", data_dir, tiny_model_dir, *settings)
    ck = tmp_path / "ck"
    saved = ck / "checkpoints"

    # 1. a real SIGINT to a real sa-train process, just after it wrote step 2's state into the staging folder
    command = [sys.executable, "-c", SIGINT_IN_SAVE, *overrides(None, data_dir, tiny_model_dir, *settings),
               f"hydra.run.dir={ck}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # no traceback wanted
    env.update(SIGINT_AFTER=".step-2.partial", PYTHONPATH=str(ROOT))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "sa-train: interrupted; re-run the same command to resume\n" in result.stderr  # after tqdm's last bar
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in saved.iterdir()) == [".step-2.partial"]  # staged, never published

    # 2. in the middle of writing step 4's state (a cut optimizer.bin, no custom state yet)
    def cut_short(self, output_dir=None, **kwargs):
        if output_dir.endswith(".step-4.partial"):
            original_save(self, output_dir, **kwargs)
            (Path(output_dir) / "custom_checkpoint_0.pkl").unlink()
            (Path(output_dir) / "optimizer.bin").write_bytes(b"\0" * 100)
            raise KeyboardInterrupt
        return original_save(self, output_dir, **kwargs)

    from accelerate import Accelerator

    original_save = Accelerator.save_state
    with monkeypatch.context() as patch:
        patch.setattr(Accelerator, "save_state", cut_short)
        with pytest.raises(KeyboardInterrupt):
            run(ck, data_dir, tiny_model_dir, *settings)
    assert sorted(p.name for p in saved.iterdir()) == [".step-4.partial", "step-2"]

    # 3. between two optimizer steps: after step 5 (the second epoch's second step), before its state is saved
    with monkeypatch.context() as patch:
        interrupt(patch, "accelerate.Accelerator", "log", lambda self, values, step=None, **k: step == 5)
        with pytest.raises(KeyboardInterrupt):
            run(ck, data_dir, tiny_model_dir, *settings)
    assert sorted(p.name for p in saved.iterdir()) == ["step-2", "step-4"]  # step 4: mid-way through epoch 2

    # 4. while writing the final model, after the last state (step 5) was saved
    with monkeypatch.context() as patch:
        interrupt(patch, "transformers.PreTrainedModel", "save_pretrained", lambda *a, **k: True)
        with pytest.raises(KeyboardInterrupt):
            run(ck, data_dir, tiny_model_dir, *settings)
    assert (saved / "step-5").is_dir() and not (ck / "model.safetensors").exists()

    final = run(ck, data_dir, tiny_model_dir, *settings)
    assert final["start_step"] == 5 and final["steps"] == whole["steps"] == 5
    assert same(weights(tmp_path / "whole"), weights(ck))
    for step in (2, 4, 5):  # every state the interrupted runs published is the uninterrupted run's
        a = torch.load(saved / f"step-{step}" / "optimizer.bin", weights_only=False)["state"]
        b = torch.load(tmp_path / "whole" / "checkpoints" / f"step-{step}" / "optimizer.bin", weights_only=False)
        assert all(torch.equal(a[k]["exp_avg"], b["state"][k]["exp_avg"]) for k in a)
