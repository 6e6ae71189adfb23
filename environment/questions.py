"""Question sets: the shipped offline set, HH-RLHF-style local JSONL/TXT files, or the `datasets` hub when online.

Accepted JSONL rows: {"id", "question"} (our format), {"prompt"} / {"text"} / {"query"}, or HH-RLHF's
{"chosen": "\\n\\nHuman: ... \\n\\nAssistant: ..."} (the first Human turn is the question). TXT: one question per line.
Order (`world.question_order`): `walk` (default, like the reference) shuffles the list once per world and each agent
walks it from its own offset, one question per round: no agent is asked a question twice until it has been asked every
question, and no two turns share a question while rounds x agents <= questions. `shuffle` (before 2026-12) draws a
fresh permutation each round, so agents are asked again what they already answered.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from conf.errors import UserError, require
from conf.schema.checks import one_of
from conf.schema.world import ORDERS

SHIPPED = Path(__file__).resolve().parent / "data" / "questions.jsonl"
_TEXT_KEYS = ("question", "prompt", "text", "query", "instruction")


@dataclass(frozen=True)
class Question:
    id: str
    text: str


def _from_row(row: object, where: str) -> Question:
    if isinstance(row, str):
        row = {"question": row}
    require(isinstance(row, dict), f"{where}: expected a JSON object with a `question` field; fix or remove that line")
    text = next((row[k] for k in _TEXT_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    if text is None and isinstance(row.get("chosen"), str):  # HH-RLHF: the dialogue's first Human turn
        text = row["chosen"].split("Human:", 1)[-1].split("Assistant:", 1)[0]
    if not text or not text.strip():
        raise UserError(f"{where}: no question text (keys question/prompt/text or HH-RLHF `chosen`); fix that line")
    text = text.strip()
    return Question(str(row.get("id") or "q-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]), text)


def load_questions(source: str, limit: int | None = None, split: str = "train") -> list[Question]:
    """Load questions from `builtin`, a local .jsonl/.json/.txt file, or `hf:<dataset>` (needs network)."""
    if source in ("builtin", "", None):
        questions = _load_file(SHIPPED)
    elif str(source).startswith("hf:"):
        questions = _load_hub(str(source)[3:], split)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserError(
                f"question file {path} does not exist; set questions.source to a .jsonl/.txt file or builtin"
            )
        questions = _load_file(path)
    questions = questions[: limit or None]  # null or 0: all
    require(bool(questions), f"question set {source!r} is empty; give a file with at least one question")
    unique: dict[str, Question] = {}  # the first question of each text, in order
    for question in questions:
        unique.setdefault(question.text, question)
    return list(unique.values())


def _read_text(path: Path) -> str:
    """The file as UTF-8 (a BOM is dropped); invalid bytes are a one-line error naming the file and byte offset."""
    data = path.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        raise UserError(
            f"{path}: invalid UTF-8 at byte offset {offset} (line {line}); re-save the file as UTF-8"
        ) from None


def _load_file(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):  # not splitlines: U+2028 is valid JSON
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = line.strip() if path.suffix == ".txt" else json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{where}: not valid JSON; fix or remove that line") from None
        questions.append(_from_row(row, where))
    return questions


def _load_hub(name: str, split: str) -> list[Question]:  # pragma: no cover - needs network
    try:
        import datasets

        rows = datasets.load_dataset(name, split=split)
    except Exception as error:
        raise UserError(
            f"cannot load dataset {name!r} from the hub ({type(error).__name__}); use a local file"
        ) from None
    return [_from_row(row, f"{name}[{i}]") for i, row in enumerate(rows)]


class QuestionSchedule:
    """Which question agent a gets in round r (`order`: walk | shuffle, see the module docstring)."""

    def __init__(self, questions: list[Question], n_agents: int, seed: int, world_id: str, order: str = "walk") -> None:
        one_of("world.question_order", order, ORDERS)
        self.questions, self.n_agents, self.seed, self.world_id, self.order = questions, n_agents, seed, world_id, order
        self._rounds: dict[int, list[int]] = {}
        n = len(questions)
        self._walk = random.Random(f"questions:{seed}:{world_id}").sample(range(n), n)

    def _index(self, round_: int, agent: int) -> int:
        if self.order == "walk":
            n = len(self.questions)  # offsets spread evenly: walks stay disjoint while rounds <= n // n_agents
            return self._walk[(agent * n // self.n_agents + round_) % n]
        if round_ not in self._rounds:
            rng = random.Random(f"questions:{self.seed}:{self.world_id}:{round_}")
            order: list[int] = []
            while len(order) < self.n_agents:
                order += rng.sample(range(len(self.questions)), len(self.questions))
            self._rounds[round_] = order[: self.n_agents]
        return self._rounds[round_][agent]

    def question(self, round_: int, agent: int) -> Question:
        return self.questions[self._index(round_, agent)]

    def repeat(self, round_: int, agent: int) -> bool:
        """Whether `agent` was asked this question in an earlier round (its own answer is then in its memory)."""
        if self.order == "walk":
            return round_ >= len(self.questions)
        index = self._index(round_, agent)
        return any(self._index(r, agent) == index for r in range(round_))
