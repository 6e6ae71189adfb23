"""Schemas of the training side: the loss registry and the top levels of sa-build-data, sa-train, sa-eval and
sa-experiment.

The YAML files are the documented defaults; here each key has its type and, in `check()` (run by `__post_init__`
when OmegaConf.to_object builds the object: `conf.schema.checked`), the checks a type cannot express. A field without a default (`MISSING`) takes its value from the YAML, so a default is written once.
The losses are the exception: a loss is also a Python API (training.losses), so its dataclass carries the defaults
and tests/test_conf_schema_training.py checks that conf/loss/<name>.yaml says the same.

Each conf/loss/<name>.yaml names its schema (`defaults: [/schema/loss/<name>@_here_, _self_]`) and each app YAML its
own (`/schema/<app>@_here_`), so Hydra refuses a wrong type or an unknown key while composing, naming the key. A
loss file of the user's own that names no schema is typed by its `name` when the app is checked (`LOSSES`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.errors import UserError, one_line, require, shown
from conf.schema.checks import at_least, must, one_of

# Which responses of a sampled group a loss needs in the forward pass (training.collator.select_responses).
SELECT_ALL, SELECT_BEST, SELECT_PAIR = "all", "best", "pair"
# sa-eval's tasks: the multiple-choice ones (training.eval.tasks builds them), the judge and the rater check.
MC_TASKS = ("hhh", "hhh_adversarial", "truthful_qa", "moral_permissibility")
EVAL_TASKS = (*MC_TASKS, "judge", "rater")
KINDS = ("imitation", "self_critic", "realignment")  # sa-build-data's sample kinds, in curriculum order
BASE_LABEL = "base"  # sa-experiment's name for the untrained model


class Checked:
    """A schema whose `check()` runs once every field has a value (a default instance, all `MISSING`, is a template
    that Hydra fills from the YAML)."""

    def __post_init__(self) -> None:
        if all(getattr(self, f.name) != MISSING for f in dataclasses.fields(self)):  # type: ignore[arg-type]
            self.check()

    def check(self) -> None:
        """The checks a type cannot express; each failure is one `UserError` naming the key."""


# ---------------------------------------------------------------------------------------------------------- losses


@dataclass
class Loss(Checked):
    """A loss: `name` picks it; a subclass's fields are its parameters, its class variables what the trainer needs."""

    name: str = MISSING
    select: ClassVar[str] = SELECT_ALL  # which responses it forwards (SELECT_*)
    needs_reference: ClassVar[bool] = False  # whether it needs the frozen reference model

    def params(self) -> dict[str, Any]:
        """The parameters (every field but `name`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}

    def _in_range(self, ok: bool, key: str) -> None:
        require(ok, f"loss.{key}={shown(getattr(self, key))} is out of range for loss={self.name}")


@dataclass
class StableAlignmentLoss(Loss):
    """L = ℓ_b + lam · max(0, mean_j [ℓ_b − ℓ_j + margin·(r_b − r_j)/rating_scale]) (SPEC §4)."""

    name: str = "stable_alignment"
    margin: float = 1.0
    lam: float = 0.2
    rating_scale: int = 7
    max_flow: bool = False
    ties: str = "exclude"
    TIES: ClassVar[tuple[str, ...]] = ("include", "exclude")

    def check(self) -> None:
        self._in_range(self.margin >= 0, "margin")
        self._in_range(self.lam >= 0, "lam")
        self._in_range(self.rating_scale > 0, "rating_scale")
        one_of("loss.ties", self.ties, self.TIES)


@dataclass
class SftLoss(Loss):
    """L = ℓ_b on the best-rated response."""

    name: str = "sft"
    select: ClassVar[str] = SELECT_BEST


@dataclass
class DpoLoss(Loss):
    """DPO on the best-vs-worst pair, against the frozen initial policy."""

    name: str = "dpo"
    beta: float = 0.1
    sft_weight: float = 0.0
    select: ClassVar[str] = SELECT_PAIR
    needs_reference: ClassVar[bool] = True

    def check(self) -> None:
        self._in_range(self.beta > 0, "beta")
        self._in_range(self.sft_weight >= 0, "sft_weight")


@dataclass
class SimpoLoss(Loss):
    """SimPO + NLL on the best-vs-worst pair, reference-free."""

    name: str = "simpo"
    beta: float = 2.0
    gamma: float = 0.5
    nll_weight: float = 1.0
    select: ClassVar[str] = SELECT_PAIR

    def check(self) -> None:
        self._in_range(self.beta > 0, "beta")
        self._in_range(self.gamma >= 0, "gamma")
        self._in_range(self.nll_weight >= 0, "nll_weight")


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (StableAlignmentLoss, SftLoss, DpoLoss, SimpoLoss)}


def typed_loss(node: Any) -> Loss:
    """The loss of a composed config: already typed (its YAML names its schema), or a mapping typed by its name."""
    if isinstance(node, Loss):
        return node
    require(isinstance(node, dict), f"loss={node!r} must be a loss node; choose with loss={'|'.join(LOSSES)}")
    name = node.get("name")
    require(isinstance(name, str) and name in LOSSES, f"loss.name={name!r} is unknown; use one of {', '.join(LOSSES)}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(LOSSES[name], node))  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        raise UserError(f"loss.{key}: {str(error).splitlines()[0]} (loss={name}; see conf/loss/{name}.yaml)") from None


# -------------------------------------------------------------------------------------------------------- sa-train


@dataclass
class Lora(Checked):
    enabled: bool = MISSING
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: Any = MISSING  # a name (all-linear) or a list of module names
    merge: bool = MISSING

    def check(self) -> None:
        if self.enabled:
            at_least("model.lora.r", self.r, 1, int)
            must(self.alpha > 0, "model.lora.alpha", self.alpha, "a number > 0")
            must(0 <= self.dropout < 1, "model.lora.dropout", self.dropout, "in [0, 1)")


@dataclass
class Model(Checked):
    name: str = MISSING
    device: str = MISSING
    precision: str = MISSING
    gradient_checkpointing: bool = MISSING
    lora: Lora = field(default_factory=Lora)

    def check(self) -> None:
        one_of("model.device", self.device, ("auto", "cpu", "cuda", "mps"))
        one_of("model.precision", self.precision, ("auto", "bf16", "fp16", "fp32"))


@dataclass
class TrainSettings(Checked):
    group_size: int = MISSING
    batch_size: int = MISSING
    groups_per_batch: int = MISSING
    epochs: int = MISSING
    max_steps: int = MISSING
    lr: float = MISSING
    scheduler: str = MISSING
    warmup_ratio: float = MISSING
    weight_decay: float = MISSING
    max_grad_norm: float = MISSING
    max_length: int = MISSING
    max_prompt_length: int = MISSING
    share_prompt: bool = MISSING
    max_tokens_per_forward: int = MISSING
    seed: int = MISSING
    log_every: int = MISSING
    save_every: int = MISSING
    resume: str | None = MISSING
    peak_tflops: float | None = MISSING
    num_workers: int = MISSING
    trace: bool = MISSING

    def check(self) -> None:
        require(self.group_size >= 1, f"train.group_size={self.group_size}: K must be >= 1")
        for key, low in (("batch_size", 1), ("groups_per_batch", 1), ("log_every", 1), ("max_tokens_per_forward", 0),
                         ("save_every", 0), ("num_workers", 0)):  # fmt: skip
            at_least(f"train.{key}", getattr(self, key), low, int)
        require(self.max_steps > 0 or self.epochs >= 1, "set train.max_steps > 0 or train.epochs >= 1")
        must(self.lr > 0, "train.lr", self.lr, "a number > 0")
        must(0 <= self.warmup_ratio < 1, "train.warmup_ratio", self.warmup_ratio, "in [0, 1)")
        at_least("train.weight_decay", self.weight_decay, 0)
        at_least("train.max_grad_norm", self.max_grad_norm, 0)
        at_least("train.max_length", self.max_length, 2, int)
        require(0 < self.max_prompt_length < self.max_length,
                f"train.max_prompt_length={self.max_prompt_length} must be in (0, train.max_length={self.max_length})")  # fmt: skip
        must(self.peak_tflops is None or self.peak_tflops > 0, "train.peak_tflops", self.peak_tflops, "a number > 0")


@dataclass
class TrainApp(Checked):
    """sa-train (conf/train.yaml)."""

    loss: Any = MISSING  # a `Loss`: conf/loss/<name>.yaml
    data: str = MISSING
    output_dir: str = MISSING
    model: Model = field(default_factory=Model)
    train: TrainSettings = field(default_factory=TrainSettings)

    def check(self) -> None:
        self.loss = typed_loss(self.loss)


# --------------------------------------------------------------------------------------------------- sa-build-data


@dataclass
class Realignment(Checked):
    min_score: float = MISSING  # a realignment sample needs revision > draft and revision > min_score


@dataclass
class Filter(Checked):
    echo_words: int = MISSING  # drop answers sharing a run of this many words with the prompts (agents.echoes)

    def check(self) -> None:
        must(self.echo_words == 0 or self.echo_words >= 4, "filter.echo_words",
             self.echo_words, "0 (keep every answer) or an integer >= 4 (shorter runs are common phrases)")  # fmt: skip


@dataclass
class Mix(Checked):
    ratio: Any = MISSING  # kind → weight (a number >= 0); null keeps every group (Any: a typed null takes no key)
    staged: bool = MISSING

    def check(self) -> None:
        if self.ratio is None:
            return
        require(
            isinstance(self.ratio, dict), f"mix.ratio={self.ratio!r} must map kinds to weights, e.g. {{imitation: 5}}"
        )
        unknown = sorted(set(self.ratio) - set(KINDS))
        require(not unknown, f"mix.ratio has unknown kind(s) {unknown}; use {', '.join(KINDS)}")
        for kind, weight in self.ratio.items():
            at_least(f"mix.ratio.{kind}", weight, 0)
        require(any(v > 0 for v in self.ratio.values()), "mix.ratio is all zero; give a kind weight > 0")


@dataclass
class BuildDataApp(Checked):
    """sa-build-data (conf/build_data.yaml)."""

    inputs: list[str] = MISSING
    output_dir: str = MISSING
    format: str = MISSING
    seed: int = MISSING
    realignment: Realignment = field(default_factory=Realignment)
    filter: Filter = field(default_factory=Filter)
    mix: Mix = field(default_factory=Mix)

    def check(self) -> None:
        require(len(self.inputs) > 0 and all(self.inputs),
                f"inputs={self.inputs!r} must be a non-empty list of episodes files or run folders; pass inputs=[RUN_DIR]")  # fmt: skip
        one_of("format", self.format, ("jsonl", "parquet", "both"))


# --------------------------------------------------------------------------------------------------------- sa-eval


@dataclass
class Scoring(Checked):
    device: str = MISSING
    dtype: str = MISSING
    batch_tokens: int = MISSING
    max_batch: int = MISSING
    max_length: int = MISSING
    end_of_turn: bool = MISSING
    cache: bool = MISSING
    truthful_qa_primer: bool = MISSING

    def check(self) -> None:
        for key in ("batch_tokens", "max_batch", "max_length"):
            at_least(f"scoring.{key}", getattr(self, key), 1, int)


@dataclass
class Adversarial(Checked):
    exchanges: str | None = MISSING


@dataclass
class Judge(Checked):
    mode: str = MISSING
    backend: Any = MISSING  # null = the top-level backend; or a backend node
    questions: str | None = MISSING
    limit: int | None = MISSING
    answer_sampling: Any = MISSING  # a sampling node (agents.factory.sampling_from checks it)
    judge_sampling: Any = MISSING
    max_reasks: int = MISSING
    rater_mode: str | None = MISSING  # null = the 1-10 judge prompt; else the observer's 1-7 rating in that mode

    def check(self) -> None:
        one_of("judge.mode", self.mode, ("score", "pairwise", "both"))
        if self.rater_mode is not None:
            one_of("judge.rater_mode", self.rater_mode, ("generate", "logprob", "likelihood"))
        must(self.limit is None or self.limit >= 1, "judge.limit", self.limit, "a positive integer or null")
        at_least("judge.max_reasks", self.max_reasks, 0, int)


@dataclass
class RatingSampling(Checked):
    temperature: float | None = MISSING
    max_tokens: int | None = MISSING
    top_p: float | None = MISSING
    prefix: str | None = MISSING


@dataclass
class RaterCheck(Checked):
    max_reasks: int = MISSING
    limit: int | None = MISSING
    pairwise: bool = MISSING
    sampling: RatingSampling = field(default_factory=RatingSampling)

    def check(self) -> None:
        at_least("rater_check.max_reasks", self.max_reasks, 0, int)
        must(self.limit is None or self.limit >= 1, "rater_check.limit", self.limit,
                "a positive number of pairs or null for all")  # fmt: skip


@dataclass
class EvalApp(Checked):
    """sa-eval (conf/eval.yaml)."""

    backend: Any = MISSING  # conf/backend/<name>.yaml
    answerer: Any = MISSING
    rater: Any = MISSING  # conf/rater/<name>.yaml
    models: list[str] = MISSING
    labels: Any = MISSING  # a list, one per model, or null (Any: a typed null takes no key)
    tasks: list[str] = MISSING
    limit: int | None = MISSING
    seed: int = MISSING
    headline: str = MISSING
    world_dir: str | None = MISSING
    bigbench_dir: str | None = MISSING
    download: bool = MISSING
    output_dir: str = MISSING
    progress: bool = MISSING
    scoring: Scoring = field(default_factory=Scoring)
    adversarial: Adversarial = field(default_factory=Adversarial)
    judge: Judge = field(default_factory=Judge)
    rater_check: RaterCheck = field(default_factory=RaterCheck)

    def check(self) -> None:
        require(self.labels is None or isinstance(self.labels, list), f"labels={self.labels!r} must be a list or null")
        unknown = sorted(set(self.tasks) - set(EVAL_TASKS))
        require(bool(self.tasks) and not unknown,
                f"tasks {unknown or self.tasks} unknown or empty; choose from {list(EVAL_TASKS)}")  # fmt: skip
        one_of("headline", self.headline, ("sum", "mean"))
        must(self.limit is None or self.limit >= 1, "limit", self.limit, "a positive number of items or null for all")
        if not set(self.tasks) & {*MC_TASKS, "judge"}:  # only these tasks evaluate `models`
            return
        require(len(self.models) > 0, "models must be a non-empty list, e.g. models=[CKPT]")
        if self.labels is not None:
            n, m = len(self.labels), len(self.models)
            require(n == m, f"labels has {n} entries for {m} models; give one each")
            self.labels = [str(label) for label in self.labels]
            require(len(set(self.labels)) == n, f"labels {self.labels} repeat; give each model its own label")
        if "judge" in self.tasks and self.judge.mode != "score":
            require(len(self.models) >= 2, "pairwise judging needs at least two models (the first is the reference)")


# --------------------------------------------------------------------------------------------------- sa-experiment


@dataclass
class Experiment(Checked):
    """One experiment (conf/experiment/<name>.yaml): what every stage runs, as each command's overrides."""

    name: str = MISSING
    base_model: str = MISSING
    worlds: int = MISSING
    simulate: list[str] = MISSING
    build_data: list[str] = MISSING
    arms: dict[str, list[str]] = MISSING
    train_seeds: list[int] = MISSING
    train: list[str] = MISSING
    eval: list[str] = MISSING
    headline: str = MISSING
    primary: str = MISSING

    def check(self) -> None:
        at_least("experiment.worlds", self.worlds, 1, int)
        must(len(self.train_seeds) > 0, "experiment.train_seeds", self.train_seeds, "a non-empty list of integers")
        require(len(self.arms) > 0, "experiment.arms must map arm names to sa-train overrides")
        require(BASE_LABEL not in self.arms, f"experiment.arms may not be named {BASE_LABEL!r} (the untrained model)")


@dataclass
class ExperimentApp(Checked):
    """sa-experiment (conf/experiment.yaml)."""

    experiment: Experiment = MISSING
    root: str = MISSING
    output_dir: str = MISSING
    alpha: float = MISSING
    min_effect: float = MISSING
    resamples: int = MISSING

    def check(self) -> None:
        must(0 < self.alpha < 1, "alpha", self.alpha, "in (0, 1)")
        must(self.min_effect >= 0, "min_effect", self.min_effect, ">= 0")


def as_app(cfg: Any, app: type) -> Any:
    """`cfg` typed by `app`'s schema, for `conf.schema.checked`: as it is when Hydra composed it; merged into the
    schema when it did not come through Hydra (a YAML loaded as is, a saved run's config), a wrong type or unknown
    key being one `UserError`."""
    if not isinstance(cfg, DictConfig) or OmegaConf.get_type(cfg) is app:
        return cfg
    try:
        return OmegaConf.merge(app, OmegaConf.masked_copy(cfg, [k for k in cfg if k != "defaults"]))
    except OmegaConfBaseException as error:
        raise UserError(one_line(error)) from None


APPS: dict[str, type] = {"train": TrainApp, "build_data": BuildDataApp, "eval": EvalApp, "experiment": ExperimentApp}
# What each YAML names in its defaults (`/schema/<app>`, `/schema/loss/<name>`); conf.schema.register_schemas stores them.
SCHEMAS = {**APPS, **{f"loss/{name}": loss for name, loss in LOSSES.items()}}
