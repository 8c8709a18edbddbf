"""Judge prompts: one user message per item, built from a per-class instruction and a layout.

A `JudgePrompts` pairs per-class instructions (raw class → text asking for a score in [0, 1]
written as `得分:`) with a layout that puts instruction, question, gold answer and model answer
into the one user message (no system message). Two sets:

- `PROJECT_PROMPTS` (`judge.prompts=project`): instructions written for this project, one per
  raw class (math and code are judged differently even though both are reported as "others"),
  in the project's `PROJECT_LAYOUT` with labelled blocks. The gold answer is included whenever
  the item has one (non-empty `std_answer`).
- `load_belle_prompts(path)` (`judge.prompts=belle`, or a path to a file in that format): BELLE's
  own `eval/eval_prompt.json` in `BelleLayout`, which rebuilds the message of BELLE's scoring
  page byte for byte (the page's code is not copied). The file is third-party data (ODC-By,
  research only): it is downloaded for users (`download_belle_prompts`), never shipped here.

BELLE's layout decides by raw class, not by the gold answer: for `generation`, `brainstorming`
and `rewrite` the gold answer is not sent even when the item has one; every other class gets
it, in a second form with its own spacing (see `BelleLayout`). The 39 `rewrite` items with a
gold answer were labelled `translation` when the paper was judged (2023-04-15) and BELLE's set
moved them into `rewrite` two days later. `BelleLayout(translation="paper")` judges them as the
paper did (gold form, `translation` instruction); `translation="current"` as BELLE's page does
with today's set (no-gold form, `rewrite` instruction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol, get_args

from lorabench.errors import DataError
from lorabench.evaluation.eval_set import (
    CATEGORY_OF_LABEL,
    EvalItem,
    download,
    jsonl_rows,
    normalise_label,
)
from lorabench.judging.base import JudgeError

BELLE_PROMPT_COMMIT = "645084d36454cdeb4e7f1ce9b2f3426bac39f1f9"
BELLE_PROMPT_URL = (
    "https://raw.githubusercontent.com/LianjiaTech/BELLE/"
    f"{BELLE_PROMPT_COMMIT}/eval/eval_prompt.json"
)
BELLE_PROMPT_SHA256 = "6032824adcd7e2bdff62071fc3a1d376bf8b72513560bc2f5bcc885ba55ca372"


InstructionFor = Callable[[str], str]
"""Raw class label → instruction (`JudgePrompts.instruction_for`)."""


class MessageLayout(Protocol):
    """How one item becomes the single user message sent to the judge."""

    @property
    def name(self) -> str:
        """The layout's id for run parameters (`project`, `belle(translation=paper)`)."""
        ...

    def build(self, instruction_for: InstructionFor, item: EvalItem, answer: str) -> str:
        """The message for `answer` to `item`; `instruction_for(label)` gives the instructions."""
        ...


@dataclass(frozen=True)
class Layout:
    """A layout of two `str.format` templates over `instruction`, `question`, `reference` and
    `answer`: `with_reference` for items with a gold answer (non-empty `std_answer`),
    `without_reference` for the others. The instruction is the one of the item's raw class."""

    with_reference: str
    without_reference: str
    name: str = "custom"

    def build(self, instruction_for: InstructionFor, item: EvalItem, answer: str) -> str:
        values = {
            "instruction": instruction_for(item.raw_class),
            "question": item.question,
            "reference": item.std_answer,
            "answer": answer,
        }
        if item.std_answer.strip():
            return self.with_reference.format(**values)
        return self.without_reference.format(**values)


PROJECT_LAYOUT = Layout(
    with_reference=(
        "{instruction}\n\n问题：\n{question}\n\n标准答案：\n{reference}\n\n模型回答：\n{answer}\n\n"
        "请先按“得分: 分数”的格式写出0到1之间的分数，再简要说明理由。"
    ),
    without_reference=(
        "{instruction}\n\n问题：\n{question}\n\n模型回答：\n{answer}\n\n"
        "请先按“得分: 分数”的格式写出0到1之间的分数，再简要说明理由。"
    ),
    name="project",
)
"""The project's layout: labelled blocks, the score format repeated last."""

BelleTranslation = Literal["paper", "current"]
"""How `BelleLayout` judges the former translation items (`rewrite` with a gold answer)."""

BELLE_TRANSLATIONS: tuple[str, ...] = get_args(BelleTranslation)

BELLE_NO_GOLD_CLASSES = frozenset({"generation", "brainstorming", "rewrite"})
"""Raw classes whose gold answer BELLE's scoring page does not send."""


@dataclass(frozen=True)
class BelleLayout:
    """The message of BELLE's scoring page (`eval/template_html/ChatGPT_Score.html.temp`).

    With PROMPT the instruction, QUESTION, STD_ANSWER and ANSWER the item's texts as they are
    (nothing stripped or escaped), the message is, for the raw classes in
    `BELLE_NO_GOLD_CLASSES` (gold answer never sent):

        PROMPT + " " + QUESTION + "  模型回答： '" + ANSWER
        + "'。请针对模型回答给出得分，顺便给出理由："

    and for every other class:

        PROMPT + " " + QUESTION + " 标准回答:" + STD_ANSWER + "  模型回答：' " + ANSWER
        + "'。请针对模型回答给出得分，顺便给出理由："

    Spacing and punctuation are exactly the page's: one space after the prompt, two before
    `模型回答`, a full-width colon after it, then a half-width space and `'` in the first form
    but `'` and a space in the second; `标准回答:` with a half-width colon and no space; the
    closing `'` followed by a full-width `。`; a final full-width `：`.

    `translation` decides the former translation items, a `rewrite` item with a non-empty gold
    answer: `paper` (default) sends them as when the paper was judged, when they were still
    labelled `translation` (second form, `translation` instruction); `current` as the page does
    with today's eval set (first form, `rewrite` instruction).
    """

    translation: BelleTranslation = "paper"

    def __post_init__(self) -> None:
        if self.translation not in BELLE_TRANSLATIONS:
            raise ValueError(
                f"translation must be one of {BELLE_TRANSLATIONS}, got {self.translation!r}"
            )

    @property
    def name(self) -> str:
        return f"belle(translation={self.translation})"

    def instruction_class(self, item: EvalItem) -> str:
        """The class whose instruction the item gets (the raw class, or `translation`)."""
        if self.translation == "paper" and self._is_former_translation(item):
            return "translation"
        return item.raw_class

    def sends_gold(self, item: EvalItem) -> bool:
        """Whether the message holds the gold answer (the page's second form)."""
        return self.instruction_class(item) not in BELLE_NO_GOLD_CLASSES

    def build(self, instruction_for: InstructionFor, item: EvalItem, answer: str) -> str:
        prompt = instruction_for(self.instruction_class(item))
        tail = "'。请针对模型回答给出得分，顺便给出理由："
        if self.sends_gold(item):
            head = f"{prompt} {item.question} 标准回答:{item.std_answer}"
            return f"{head}  模型回答：' {answer}{tail}"
        return f"{prompt} {item.question}  模型回答： '{answer}{tail}"

    @staticmethod
    def _is_former_translation(item: EvalItem) -> bool:
        return item.raw_class == "rewrite" and bool(item.std_answer.strip())


BELLE_LAYOUT = BelleLayout("paper")
"""BELLE's layout with the former translation items judged as in the paper."""

_SCALE = "分数在0到1之间，1分最好，0分最差。请以“得分:”开头写出分数。"

_PROJECT_INSTRUCTIONS = {
    "math": (
        "你是一名数学老师，请评判模型对下面这道数学题的解答。模型的最终结果必须与标准答案的"
        "最终结果相同；解题过程可以与标准答案不同，但每一步都必须正确。"
    ),
    "code": (
        "你是一名编程老师，请判断模型给出的代码能否正确解决下面的编程问题。标准答案仅供参考，"
        "实现方式可以不同，但代码必须正确、可以运行。"
    ),
    "classification": (
        "请对照标准答案评价模型的分类结果：模型给出的类别与标准答案一致时得分高，不一致时得分低。"
    ),
    "extract": (
        "请对照标准答案评价模型的信息抽取结果：抽取的内容必须出自问题给出的文本，"
        "并准确回答问题的要求。"
    ),
    "open qa": "请对照标准答案评价模型的回答：回答与标准答案的内容越一致、越准确，得分越高。",
    "closed qa": (
        "请对照标准答案评价模型的回答：回答必须依据问题中给出的材料，并且与标准答案一致。"
    ),
    "generation": (
        "请评价模型生成的内容：是否满足问题的要求，语句是否通顺，内容是否真实、没有恶意。"
    ),
    "brainstorming": (
        "请评价模型的回答：提出的内容是否切题、对提问者是否有帮助，内容是否真实、没有恶意。"
    ),
    "rewrite": (
        "请评价模型的改写结果：是否完成了问题中提出的改写要求，并保留原文的意思；"
        "如果给出了标准答案，请参考标准答案。"
    ),
    "translation": (
        "你是一名语言学家，请对照标准答案评价模型的翻译：译文要忠实于原文的意思，"
        "表达越通顺自然，得分越高。"
    ),
    "summarization": (
        "请对照标准答案评价模型的摘要：摘要要包含原文的要点，简洁准确，没有原文之外的内容。"
    ),
}


@dataclass(frozen=True)
class JudgePrompts:
    """Per-class judge instructions and the layout that turns an item into one message."""

    instructions: Mapping[str, str]
    """Normalised raw class label (`math`, `open qa`, …) → instruction."""
    layout: MessageLayout = PROJECT_LAYOUT
    source: str = "lorabench"
    """Where the instructions came from, for run parameters (`lorabench`, `belle:<sha256[:12]>`);
    the layout's `name` says how they were put into messages."""
    _by_label: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_label = {normalise_label(k): v for k, v in self.instructions.items()}
        object.__setattr__(self, "_by_label", MappingProxyType(by_label))

    def instruction_for(self, raw_class: str) -> str:
        """The instruction for a raw class; `JudgeError` naming the known ones if missing."""
        try:
            return self._by_label[normalise_label(raw_class)]
        except KeyError:
            known = ", ".join(sorted(self._by_label))
            raise JudgeError(
                f"judge prompts ({self.source}) have no instruction for class {raw_class!r} "
                f"(they have: {known})"
            ) from None

    def build(self, item: EvalItem, answer: str) -> str:
        """The single user message that asks the judge to score `answer` to `item`."""
        return self.layout.build(self.instruction_for, item, answer)


PROJECT_PROMPTS = JudgePrompts(
    instructions={k: f"{v}{_SCALE}" for k, v in _PROJECT_INSTRUCTIONS.items()},
    layout=PROJECT_LAYOUT,
    source="lorabench",
)
"""The project's own instructions, one per raw class (plus `translation` for older eval sets)."""


def load_belle_prompts(
    path: str | Path, sha256: str | None = None, *, layout: MessageLayout = BELLE_LAYOUT
) -> JudgePrompts:
    """BELLE's `eval_prompt.json` (JSON Lines `{"class", "prompt"}`), in BELLE's layout.

    Labels are normalised like the eval set's (`open QA` → `open qa`, `closed\\u00a0QA` →
    `closed qa`). With `sha256`, the file must have that checksum (`BELLE_PROMPT_SHA256` is the
    version nearest the paper's judging date). `layout` defaults to `BELLE_LAYOUT` (the page's
    messages, former translation items as in the paper); `BelleLayout("current")` for the page
    as it is today.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"judge prompt file {path} does not exist; fetch BELLE's with "
            f"download_belle_prompts({str(path)!r}) or from {BELLE_PROMPT_URL}"
        )
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(f"{path}: checksum {digest} does not match {sha256}")
    instructions: dict[str, str] = {}
    for where, row in jsonl_rows(payload.decode("utf-8"), path):
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("class", "prompt")
        ):
            raise DataError(f"{where}: needs string fields 'class' and 'prompt'")
        label = normalise_label(row["class"])
        if label not in CATEGORY_OF_LABEL:
            raise DataError(f"{where}: unknown class {row['class']!r}")
        if label in instructions:
            raise DataError(f"{where}: class {row['class']!r} appears twice")
        instructions[label] = row["prompt"]
    if not instructions:
        raise DataError(f"judge prompt file {path} holds no prompts")
    return JudgePrompts(instructions, layout=layout, source=f"belle:{digest[:12]}")


def download_belle_prompts(dest: str | Path, timeout: float = 60) -> Path:
    """Fetch BELLE's `eval_prompt.json` (pinned commit, checked SHA-256) to `dest`."""
    return download(BELLE_PROMPT_URL, dest, BELLE_PROMPT_SHA256, timeout=timeout)
