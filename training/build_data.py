"""`sa-build-data`: rated episodes (one or many worlds) → grouped training data + a data card (SPEC §3).

Three sample kinds, each response carrying its own rating; invalid (null) ratings are dropped, never coerced:
- imitation:   prompt = q;                               responses = draft, revision (observer alignment scores)
- self_critic: prompt = q + draft + "comment on ...";    responses = each peer's reason (that peer's rating)
- realignment: prompt = q + draft + "comment, revise";   response  = all feedback + the revision (revision score),
               only where revision score > draft score and revision score > `realignment.min_score`; one sample per
               interaction (the reference wrote one near-duplicate per peer).
One output item = one prompt with all its rated responses pooled across agents and worlds, each tagged with kind,
model, persona (where the episode names one) and provenance (world, round, agent). An episode seen twice (same world/round/agent *and* same content, e.g.
a file passed both directly and through its run folder) is read once; two runs that reuse a world id but hold different
interactions are both kept. An identical response text to the same prompt is kept once (its first rating wins). Groups
are mixed by `mix.ratio` (in groups, capped relative to the imitation anchor: see `mix`) and optionally staged.
Ratings are real numbers in [1, 7] (ints, expected values, mapped likelihood scores). The data card says whether they
carry signal (environment.signal: tied groups, rating gaps, peer–observer agreement); when they cannot drive the loss
a one-line warning goes to stderr and into the card (the exit code stays 0).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents.echoes import protocol_echo
from agents.prompts import format_rating as rating_text  # a rating as the agent reads it: 5, 4.3
from conf.cli import hydra_command
from conf.errors import UserError, require
from conf.schema import checked
from conf.schema.training import KINDS, BuildDataApp, as_app
from environment.analysis import SCORES, STAGES
from environment.episodes import read_or_fail
from environment.records import record_key, valid_rating
from environment.signal import episode_signal, group_signal, histogram, noise_warning, observer_score, unreadable_count

SELF_CRITIC_INSTRUCTION = (
    "Comment on how well the response below is aligned with shared social values "
    "(harmless, unbiased, honest and helpful)."
)
REALIGNMENT_INSTRUCTION = (
    "First comment on how well the response below is aligned with shared social values, then revise it."
)
DATA_FILE = "train.jsonl"
# Raised when the same episodes and overrides give other data, so sa-experiment's cached data (and what was trained on
# it) is rebuilt: 2 = protocol echoes dropped (filter.echo_words).
BUILDER_VERSION = 2
# The data card's "dropped" counts, in order.
DROPPED = ("invalid_ratings", "duplicate_episodes", "duplicate_responses", "protocol_echoes")
ECHO_EXAMPLES = 3  # dropped protocol echoes the data card quotes
NO_PERSONA = "(none)"  # data-card key for responses whose episode names no persona (older episode files)


def realignment_output(feedback: list[tuple[float, str]], revision: str) -> str:
    """All valid peer feedback (lowest-rated last, as the agent saw it) followed by the revised response."""
    ordered = sorted(feedback, key=lambda item: -item[0])
    lines = "\n".join(f"- Rated {rating_text(rating)}/7: {reason.strip()}" for rating, reason in ordered)
    return f"Feedback:\n{lines}\n\nRevised response: {revision.strip()}"


def episode_files(inputs: Iterable[str]) -> list[Path]:
    """Each input is an episodes file or a run folder (searched recursively for `episodes.jsonl`, so a multirun works)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            found = sorted(path.rglob("episodes.jsonl"))
            require(bool(found), f"no episodes.jsonl under {path}; pass a run folder of sa-simulate or the file")
            files += found
        else:
            require(path.is_file(), f"episodes file {path} not found; check inputs=[...]")
            files.append(path)
    return list(dict.fromkeys(p.resolve() for p in files))


_JSON_TYPES = {type(None): "null", str: "string", bool: "boolean", int: "integer", float: "number", list: "list",
               dict: "object"}  # fmt: skip


def _type_name(value: Any) -> str:
    """The JSON type of a value with its article ("an integer", "a string")."""
    name = _JSON_TYPES.get(type(value), type(value).__name__)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _field_problem(value: Any, kinds: tuple[type, ...], nullable: bool) -> str | None:
    """Why `value` is not one of `kinds` (or null when `nullable`), or None; strings must encode as UTF-8."""
    if value is None:
        return None if nullable else "is null"
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return f"is {_type_name(value)}, not {' or '.join(_type_name(k()) for k in kinds)}"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate escape (\\udXXX), not text"
    return None


def episode_problem(record: dict[str, Any]) -> str | None:
    """What in a schema-valid episode (environment.records) cannot become training data: "field <name> <problem>", or
    None. sa-simulate always writes a string question and draft/revision objects whose text is a string or null; any
    other shape (`question: null` renders no prompt and crashes sa-train's chat template; `draft: "text"`) means the
    file was written or edited by something else, so it is an error, never a silent skip."""
    text, ident, number = (str,), (str, int), (int,)
    fields: list[tuple[str, Any, tuple[type, ...], bool]] = [
        ("question", record["question"], text, False), ("world_id", record["world_id"], ident, False),
        ("question_id", record["question_id"], ident, False), ("agent_model", record["agent_model"], ident, False),
        ("agent_persona", record.get("agent_persona"), text, True),
    ]  # fmt: skip
    for stage in ("draft", "revision"):
        value = record[stage]
        if value is not None and not isinstance(value, dict):
            return f"field {stage} is {_type_name(value)}, not an object with a text"
        fields.append((f"{stage}.text", (value or {}).get("text"), text, True))
    for index, item in enumerate(record["feedback"]):
        if not isinstance(item, dict):
            return f"field feedback[{index}] is {_type_name(item)}, not an object"
        for key, kinds in (("reason", text), ("peer_persona", text), ("peer_model", ident), ("peer_id", number)):
            fields.append((f"feedback[{index}].{key}", item.get(key), kinds, True))
        fields.append((f"feedback[{index}].valid", item.get("valid"), (bool,), True))
    for name, value, kinds, nullable in fields:
        if problem := _field_problem(value, kinds, nullable):
            return f"field {name} {problem}"
    if not record["question"].strip():
        return "field question is empty"
    return None


def samples_from_episode(
    record: dict[str, Any], min_score: float, echo_words: int = 0
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (kind, prompt, response) for every validly rated sample of one episode. An imitation or realignment
    response whose answer echoes the protocol (agents.echoes, runs of `echo_words` words; 0: off) carries the echoed
    words in `echo`; build_groups drops it."""
    question, draft = record["question"], (record["draft"] or {}).get("text") or ""
    revision = (record["revision"] or {}).get("text") or ""
    score_draft, score_revision = (valid_rating(observer_score(record, stage, "alignment")) for stage in STAGES)
    world, number, agent = record_key(record)
    base = {"world_id": world, "round": number, "agent_id": agent, "question_id": str(record["question_id"])}
    model, persona = str(record["agent_model"]), record.get("agent_persona")
    judged = f"{question}\n\nResponse: {draft}\n\n"  # a self-critic or realignment prompt, before its instruction
    echo = {text: protocol_echo(text, echo_words, persona) for text in (draft, revision)}
    for source, text, rating in (("draft", draft, score_draft), ("revision", revision, score_revision)):
        if rating is not None and text.strip():
            response = {**base, "text": text, "rating": rating, "model": model, "persona": persona, "source": source}
            yield "imitation", question, {**response, "echo": echo[text]}
    feedback = []
    for item in record["feedback"]:
        rating, reason = valid_rating(item.get("rating")), (item.get("reason") or "").strip()
        if rating is None or item.get("valid") is False or not reason or not draft.strip():
            continue
        feedback.append((rating, reason))
        peer = {
            "peer_id": item.get("peer_id"), "model": str(item.get("peer_model")), "persona": item.get("peer_persona"),
            "source": "feedback",
        }  # fmt: skip
        yield "self_critic", judged + SELF_CRITIC_INSTRUCTION, {**base, **peer, "text": reason, "rating": rating}
    improved = score_draft is not None and score_revision is not None and score_revision > score_draft
    if improved and score_revision > min_score and feedback and revision.strip():
        text = realignment_output(feedback, revision)
        response = {
            **base, "text": text, "rating": score_revision, "model": model, "persona": persona, "source": "realignment",
            "echo": echo[revision],
        }  # fmt: skip
        yield "realignment", judged + REALIGNMENT_INSTRUCTION, response


def episode_identity(record: dict[str, Any]) -> tuple[str, int, int, str]:
    """(world, round, agent) plus a digest of what happened, so only a true repeat of an interaction is a duplicate."""
    content = [record["question"], (record["draft"] or {}).get("text"), (record["revision"] or {}).get("text")]
    digest = hashlib.sha1(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()
    return (*record_key(record), digest)


def rating_view(record: dict[str, Any]) -> dict[str, Any]:
    """The part of an episode that environment.signal reads (its ratings), without the texts."""
    feedback = [{"rating": item.get("rating"), "valid": item.get("valid")} for item in record["feedback"]]
    scores = {stage: {key: observer_score(record, stage, key) for key in SCORES} for stage in STAGES}
    return {"feedback": feedback, "observer": scores}


def read_checked(path: Path) -> list[dict[str, Any]]:
    """The episodes of one file (environment.episodes.read_or_fail), each checked by `episode_problem`; any
    problem is a one-line UserError naming file, line and field."""
    fix = "regenerate it with sa-simulate or drop it from inputs"
    numbered = read_or_fail(path, fix)
    for number, record in numbered:
        if problem := episode_problem(record):
            raise UserError(f"{path}:{number}: not a usable episode record ({problem}); {fix}")
    return [record for _, record in numbered]


def build_groups(
    files: list[Path], min_score: float, echo_words: int = 0
) -> tuple[list[dict[str, Any]], Counter, list[dict[str, Any]]]:
    """Read every file, drop duplicate episodes, protocol echoes and duplicate responses, and group responses by
    (kind, prompt).

    Also returns the ratings of every distinct episode read (`rating_view`), for the data card's signal section.
    """
    stats: Counter = Counter()
    ratings: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int, str]] = set()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    texts: dict[tuple[str, str], set[str]] = defaultdict(set)
    echo_examples: list[dict[str, Any]] = []  # the first few dropped, for the data card
    for path in files:
        for record in tqdm(read_checked(path), desc=f"episodes {path.parent.name}", leave=False):
            key = episode_identity(record)
            if key in seen:
                stats["duplicate_episodes"] += 1
                continue
            seen.add(key)
            stats["episodes"] += 1
            stats["question_repeats"] += bool(record.get("question_repeat"))  # asked again (sa-simulate's flag)
            ratings.append(rating_view(record))
            stats["invalid_ratings"] += unreadable_count(record)  # they produce no sample
            for kind, prompt, response in samples_from_episode(record, min_score, echo_words):
                if echo := response.pop("echo", None):
                    stats["protocol_echoes"] += 1
                    if len(echo_examples) < ECHO_EXAMPLES:
                        echo_examples.append({"kind": kind, "rating": response["rating"], "echoes": echo,
                                              "text": response["text"][:200]})  # fmt: skip
                    continue
                group_key = (kind, prompt)
                if response["text"] in texts[group_key]:
                    stats["duplicate_responses"] += 1
                    continue
                texts[group_key].add(response["text"])
                group = groups.setdefault(
                    group_key,
                    {"kind": kind, "question_id": response["question_id"], "prompt": prompt, "responses": []},
                )
                group["responses"].append({"kind": kind, **response})
    stats["echo_examples"] = echo_examples
    return list(groups.values()), stats, ratings


def mix(
    groups: list[dict[str, Any]], ratio: dict[str, float] | None, staged: bool, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cap kinds by `ratio` (counted in groups) relative to the anchor kind, then order the items; also return the
    plan (`anchor`, and per kind: available, cap, kept, dropped) for the data card.

    The anchor is imitation (as in the reference release, 5 : 1 : 1), or the first of self_critic, realignment when
    imitation has ratio 0 or no groups. Every anchor group is kept; another kind keeps at most
    round(anchor groups · its weight / anchor weight) groups (at least one), so a scarce or missing kind never
    discards the others (120 / 5,000 / 1 groups keep 120 / 24 / 1 at 5 : 1 : 1). A kind with ratio 0 is excluded.
    `staged` orders imitation → self_critic → realignment (stage 0, 1, 2); otherwise items are shuffled (stage 0).
    """
    rng = random.Random(seed)
    by_kind = {kind: [g for g in groups if g["kind"] == kind] for kind in KINDS}
    available = {kind: len(by_kind[kind]) for kind in KINDS}
    caps: dict[str, int | None] = dict.fromkeys(KINDS)
    anchor = None
    if ratio is not None:
        weights = {kind: float(ratio.get(kind, 0)) for kind in KINDS}
        anchor = next((k for k in KINDS if weights[k] > 0 and by_kind[k]), None)
        for kind in KINDS:
            if weights[kind] <= 0:
                caps[kind] = 0
            elif anchor is not None and kind != anchor:
                caps[kind] = max(1, round(available[anchor] * weights[kind] / weights[anchor]))
            if (cap := caps[kind]) is not None and cap < available[kind]:
                by_kind[kind] = rng.sample(by_kind[kind], cap)
    plan = {
        "anchor": anchor,
        "per_kind": {
            kind: {"available": available[kind], "cap": caps[kind], "kept": len(by_kind[kind]),
                   "dropped": available[kind] - len(by_kind[kind])}
            for kind in KINDS
        },
    }  # fmt: skip
    items = [{**group, "stage": stage if staged else 0} for stage, kind in enumerate(KINDS) for group in by_kind[kind]]
    rng.shuffle(items)
    items.sort(key=lambda item: item["stage"])  # stable: shuffled within a stage
    for index, item in enumerate(items):
        item["group_id"] = f"{item['kind']}-{index:06d}"
        item["messages"] = [{"role": "user", "content": item["prompt"]}]
    return items, plan


def data_card(
    items: list[dict[str, Any]],
    stats: Counter,
    files: list[Path],
    cfg: DictConfig,
    episodes: list[dict[str, Any]],
    plan: dict[str, Any],
) -> dict[str, Any]:
    """Counts per kind, model and persona (groups and responses), what was dropped and why, the mix (`plan` from
    `mix`: anchor kind, groups available / cap / kept / dropped per kind) and the signal section (`episodes`: the
    ratings of the episodes read, see `rating_view`); `signal_warning` when noise_warning fires."""
    responses = [r for i in items for r in i["responses"]]
    card: dict[str, Any] = {
        "inputs": [str(p) for p in files],
        "builder_version": BUILDER_VERSION,
        "episodes": stats["episodes"],
        "question_repeats": stats["question_repeats"],  # episodes whose agent had answered that question before
        "dropped": {key: stats[key] for key in DROPPED},
        "dropped_echo_examples": stats["echo_examples"],
        "groups": len(items),
        "responses": len(responses),
        "groups_per_kind": dict(Counter(i["kind"] for i in items)),
        "groups_per_kind_before_mix": dict(stats["groups_before_mix"]),
        "responses_per_kind": dict(Counter(r["kind"] for r in responses)),
        "responses_per_model": dict(Counter(r["model"] for r in responses)),
        "responses_per_persona": dict(Counter(r.get("persona") or NO_PERSONA for r in responses)),
        "responses_per_kind_model": dict(Counter(f"{r['kind']}/{r['model']}" for r in responses)),  # kinds hold no "/"
        "rating_histogram": histogram([r["rating"] for r in responses]),
        "group_size_histogram": {str(k): v for k, v in sorted(Counter(len(i["responses"]) for i in items).items())},
        "mix": {"ratio": OmegaConf.to_container(cfg.mix)["ratio"], "staged": bool(cfg.mix.staged), **plan},
    }  # fmt: skip
    # Does the written data carry signal? group_signal over the ratings of each written group; episode_signal of the
    # episodes read (valid shares, peer–observer agreement).
    card["signal"] = {
        "groups": group_signal([r["rating"] for r in item["responses"]] for item in items),
        "episodes": episode_signal(episodes),
    }
    if warning := noise_warning(card["signal"], "sa-build-data"):
        card["signal_warning"] = warning
    return card


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def signal_lines(signal: dict[str, Any]) -> list[str]:
    """The signal section in plain language, one markdown bullet per fact."""
    groups, episodes = signal["groups"], signal["episodes"]
    lines = []
    if groups["n_multi"]:
        tied = round(groups["tied_share"] * groups["n_multi"])
        lines.append(
            f"{tied} of {groups['n_multi']} groups with ≥2 responses tie ({_share(groups['tied_share'])}); "
            f"the best response is rated {groups['mean_gap']:.2f} above the mean of the others on average"
        )
    else:
        lines.append("no group holds ≥2 responses: the contrastive term has nothing to compare (the loss is SFT)")
    lines.append(f"rating entropy {groups['entropy']:.2f} bits over {len(groups['histogram'])} half-point bin(s)")
    if episodes["n_multi"]:
        lines.append(
            f"observer: draft and revision scored alike in {_share(episodes['tied_share'])} of "
            f"{episodes['n_multi']} interactions (the better of the two {episodes['mean_gap']:.2f} higher on average)"
        )
    agreement = episodes["peer_observer_agreement"]
    rho = "n/a" if agreement["spearman"] is None else f"{agreement['spearman']:.2f}"
    lines.append(f"peer–observer agreement (Spearman, per draft): {rho} over {agreement['n']} drafts")
    if agreement.get("identical_share") == 1.0:
        lines.append(
            "every peer gave the observer's exact rating on every draft: peers and observer are one rater here "
            "(same model, same mode, no memory in context), so the agreement is 1 by construction, not evidence"
        )
    for role, label in (("peer", "peer ratings"), ("observer_alignment", "observer alignment scores")):
        stats = episodes[role]
        lines.append(
            f"{label}: {_share(stats['valid_share'])} valid of {stats['n']}, entropy {stats['entropy']:.2f} bits"
        )
    return lines


def mix_table(mix: dict[str, Any]) -> str:
    """The mix as markdown: per kind the groups available, the cap (relative to the anchor), kept and dropped."""
    rows = "\n".join(
        f"| {kind}{' (anchor)' if kind == mix['anchor'] else ''} | {row['available']} | "
        f"{'all' if row['cap'] is None else row['cap']} | {row['kept']} | {row['dropped']} |"
        for kind, row in mix["per_kind"].items()
    )
    return f"### Mix\n\n| kind | available | cap | kept | dropped |\n|---|---|---|---|---|\n{rows}\n"


def card_markdown(card: dict[str, Any]) -> str:
    """The data card as a short markdown report."""

    def table(title: str, counts: dict[str, int]) -> str:
        rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(counts.items()))
        return f"### {title}\n\n| | count |\n|---|---|\n{rows}\n"

    head = (
        "# Data card\n\n"
        f"- episodes read: {card['episodes']} from {len(card['inputs'])} file(s)\n"
        f"- groups (items): {card['groups']}; responses: {card['responses']}\n"
        f"- dropped: {card['dropped']['invalid_ratings']} invalid (null) ratings, "
        f"{card['dropped']['duplicate_episodes']} duplicate episodes, "
        f"{card['dropped']['duplicate_responses']} duplicate responses, "
        f"{card['dropped']['protocol_echoes']} protocol echoes (answers repeating the society's prompts)\n"
        f"- mix: ratio {card['mix']['ratio']} (in groups), staged {card['mix']['staged']}\n\n"
    )
    sections = [
        mix_table(card["mix"]),
        table("Groups per kind (before mix)", card["groups_per_kind_before_mix"]),
        table("Groups per kind", card["groups_per_kind"]),
        table("Responses per kind", card["responses_per_kind"]),
        table("Responses per model", card["responses_per_model"]),
        table("Responses per persona", card["responses_per_persona"]),
        table("Responses per kind/model", card["responses_per_kind_model"]),
        table("Ratings (half-point bins)", card["rating_histogram"]),
        table("Responses per group", card["group_size_histogram"]),
    ]
    if card["dropped_echo_examples"]:
        sections.append(f"### Dropped as protocol echoes (the first {len(card['dropped_echo_examples'])})\n\n" + "".join(
            f"- {e['kind']}, rated {rating_text(e['rating'])}, repeats \"{e['echoes']}\": {json.dumps(e['text'], ensure_ascii=False)}\n"
            for e in card["dropped_echo_examples"]))  # fmt: skip
    signal = "### Signal\n\n" + "".join(f"- {line}\n" for line in signal_lines(card["signal"]))
    if card.get("signal_warning"):
        signal += f"\n**Warning:** {card['signal_warning']}\n"
    return head + "\n".join([*sections, signal])


def validate(cfg: DictConfig) -> None:
    """Reject bad values before reading anything (conf/schema/training.py), each in one line naming the key."""
    checked(as_app(cfg, BuildDataApp))


def build(cfg: DictConfig) -> dict[str, Any]:
    """Run the builder and write the data file(s) and data card into `output_dir`; return the card."""
    validate(cfg)
    files = episode_files(cfg.inputs)
    groups, stats, episodes = build_groups(files, float(cfg.realignment.min_score), int(cfg.filter.echo_words))
    require(bool(groups), f"no validly rated samples in {len(files)} episodes file(s); check the simulation output")
    stats["groups_before_mix"] = Counter(g["kind"] for g in groups)
    items, plan = mix(groups, OmegaConf.to_container(cfg.mix)["ratio"], bool(cfg.mix.staged), int(cfg.seed))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = ("group_id", "kind", "stage", "question_id", "prompt", "messages", "responses")
    rows = [{key: item[key] for key in fields} for item in items]
    if cfg.format in ("jsonl", "both"):
        with (out / DATA_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if cfg.format in ("parquet", "both"):
        from datasets import Dataset

        Dataset.from_list(rows).to_parquet(str(out / "train.parquet"))
    card = data_card(items, stats, files, cfg, episodes, plan)
    if card.get("signal_warning"):
        print(card["signal_warning"], file=sys.stderr)
    (out / "data_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / "data_card.md").write_text(card_markdown(card), encoding="utf-8")
    return card


@hydra_command("build_data", prog="sa-build-data")
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    card = build(cfg)
    print(
        f"sa-build-data: {card['groups']} groups / {card['responses']} responses "
        f"({', '.join(f'{k} {v}' for k, v in sorted(card['groups_per_kind'].items()))}) from {card['episodes']} "
        f"episodes; dropped {card['dropped']['invalid_ratings']} invalid ratings, {card['dropped']['protocol_echoes']} "
        f"protocol echoes → {cfg.output_dir}"
    )


if __name__ == "__main__":
    main()
