"""A deterministic, generated demo instruction corpus (Chinese and English).

The tiny CPU model needs training data shaped like BELLE's (``instruction``/``input``/``output``)
and an eval set shaped like BELLE's eval set (``question``/``std_answer``/``class``), without
downloads. Every item asks about the demo world (`lorabench.demo.world`: its entities, and the
plain text the tiny bases are pretrained on) through small templates written here, so the
answers are simple enough for a tiny model to learn and for an offline judge to check.

Train/eval separation, twice over:

- by question: a question is "held out" when a hash of its BELLE-format text falls in a fixed
  bucket. Training samples never use held-out questions and eval rows only use them, so no eval
  question is ever seen verbatim in training;
- by knowledge: training samples draw on `demo_world.TAUGHT`, eval rows on `demo_world.ALL`, so a
  third of the capitals, facts, words, categories and functions the eval asks about are known
  from pretraining alone. The other facts (a capital, a translation) also appear in training,
  under other phrasings.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from lorabench.demo import world
from lorabench.demo.world import ALL, TAUGHT, Entities

RAW_CLASSES: tuple[str, ...] = (
    "math",
    "code",
    "rewrite",
    "classification",
    "generation",
    "summarization",
    "extract",
    "open qa",
    "brainstorming",
    "closed qa",
)
"""The 10 raw class labels of the BELLE eval set (math + code are reported together as others)."""

DOMAINS = ("general", "math")
"""Training domains: ``general`` spans all classes, ``math`` is school-math word problems only."""

# One question in five is reserved for eval (see the module docstring).
_HELD_OUT_BUCKETS = 5
_ANSWER = "答案："
"""What a worked math answer's last line starts with, before the number."""
# Rejection sampling normally needs ~1.25 draws per item; this bound only catches an exhausted
# question space (e.g. asking for more distinct eval rows than a class can produce).
_MAX_DRAWS_PER_ITEM = 2000


class _Item(NamedTuple):
    instruction: str
    input: str
    output: str


# --------------------------------------------------------------------------------------------
# Instruction-side wording (the world's entities are in lorabench.demo.world)
# --------------------------------------------------------------------------------------------

_COUNT_ZH = {2: "两", 3: "三", 4: "四", 5: "五"}
_COUNT_EN = {2: "two", 3: "three", 4: "four", 5: "five"}
_GENERATION_FRAMES_ZH = ("写一句关于{t}的话。", "以{t}为题写一个句子。", "请用一句话描写{t}。")
_GENERATION_FRAMES_EN = (
    "Write one sentence about {t}.",
    "Write a short sentence on the topic of {t}.",
    "Describe {t} in one sentence.",
)


# --------------------------------------------------------------------------------------------
# Per-class generators: each draws one item from a seeded random.Random.
# --------------------------------------------------------------------------------------------


def _is_zh(rng: random.Random) -> bool:
    return rng.random() < 0.5


def _arithmetic(rng: random.Random, w: Entities) -> _Item:
    a, op, b, result = world.arithmetic_fact(rng)
    zh_op = {"+": "加", "-": "减", "*": "乘以"}[op]
    en_op = {"+": "plus", "-": "minus", "*": "times"}[op]
    if _is_zh(rng):
        return _Item(f"计算 {a} {zh_op} {b} 等于多少？", "", str(result))
    return _Item(f"What is {a} {en_op} {b}?", "", str(result))


def _word_problem(rng: random.Random, w: Entities) -> _Item:
    """School-math style problem (Chinese) about a world situation, whose worked answer ends in
    the number."""
    m = world.math_situation(rng)
    n, o, u, a, b = m.name, m.obj, m.unit, m.a, m.b
    question, work = {
        "buy": (
            f"{n}有{a}{u}{o}，又买了{b}{u}，现在一共有多少{u}{o}？",
            f"{n}原来有{a}{u}，又买了{b}{u}，一共有 {a} + {b} = {m.result}{u}。",
        ),
        "give": (
            f"{n}有{a}{u}{o}，送给朋友{b}{u}，还剩多少{u}{o}？",
            f"{n}原来有{a}{u}，送出{b}{u}，还剩 {a} - {b} = {m.result}{u}。",
        ),
        "boxes": (
            f"每个盒子里有{a}{u}{o}，{b}个盒子一共有多少{u}{o}？",
            f"每盒{a}{u}，共{b}盒，一共有 {a} × {b} = {m.result}{u}。",
        ),
        "share": (
            f"{a}{u}{o}平均分给{b}个小朋友，每人分到几{u}？",
            f"把{a}{u}平均分成{b}份，每人分到 {a} ÷ {b} = {m.result}{u}。",
        ),
        "change": (
            f"一{u}{o}{a}元，{n}买了{b}{u}，付了{m.paid}元，应找回多少元？",
            f"买{o}一共花了 {a} × {b} = {a * b} 元，应找回 {m.paid} - {a * b} = {m.result} 元。",
        ),
    }[m.kind]
    return _Item(question, "", f"{work}\n{_ANSWER}{m.result}")


def _code(rng: random.Random, w: Entities) -> _Item:
    name, desc_zh, desc_en, body = rng.choice(w.code_functions)
    p = rng.choice(world.CODE_PARAMS)
    output = f"def {name}({p}):\n    return {body.format(p=p)}"
    if _is_zh(rng):
        frame = rng.choice(("写一个 Python 函数，返回 {d}。", "用 Python 实现一个函数，计算 {d}。"))
        return _Item(frame.format(d=desc_zh.format(p=p)), "", output)
    frame = rng.choice(
        ("Write a Python function that returns {d}.", "Implement a Python function to compute {d}.")
    )
    return _Item(frame.format(d=desc_en.format(p=p)), "", output)


def _rewrite(rng: random.Random, w: Entities) -> _Item:
    kind = rng.randrange(3)
    zh_word, en_word = rng.choice(w.dictionary)
    if kind == 0:
        frame = rng.choice(("把下面的词翻译成英文：", "Translate the Chinese word into English."))
        return _Item(frame, zh_word, en_word)
    if kind == 1:
        frame = rng.choice(("把下面的英文单词翻译成中文：", "Translate the word into Chinese."))
        return _Item(frame, en_word, zh_word)
    sentence = f"{rng.choice(world.NAMES_EN)}'s favourite word is {en_word}."
    frame = rng.choice(("把下面的句子改写成大写字母：", "Rewrite the sentence in upper case."))
    return _Item(frame, sentence, sentence.upper())


def _classification(rng: random.Random, w: Entities) -> _Item:
    positive = rng.random() < 0.5
    if _is_zh(rng):
        adjectives = world.POSITIVE_ZH if positive else world.NEGATIVE_ZH
        subject, adverb = (
            rng.choice(world.SENTIMENT_SUBJECTS_ZH),
            rng.choice(world.SENTIMENT_ADVERBS_ZH),
        )
        sentence = f"{subject}{adverb}{rng.choice(adjectives)}。"
        return _Item("判断下面句子的情感是正面还是负面：", sentence, "正面" if positive else "负面")
    adjectives = world.POSITIVE_EN if positive else world.NEGATIVE_EN
    subject, adverb = (
        rng.choice(world.SENTIMENT_SUBJECTS_EN),
        rng.choice(world.SENTIMENT_ADVERBS_EN),
    )
    sentence = f"{subject} was {adverb} {rng.choice(adjectives)}."
    return _Item(
        "Classify the sentiment of the sentence as positive or negative.",
        sentence,
        "positive" if positive else "negative",
    )


def _extract(rng: random.Random, w: Entities) -> _Item:
    if _is_zh(rng):
        name = rng.choice(world.NAMES_ZH)
        sentence = f"昨天{name}在{rng.choice(world.PLACES_ZH)}{rng.choice(world.ACTIVITIES_ZH)}。"
        return _Item("从句子中提取人名：", sentence, name)
    name = rng.choice(world.NAMES_EN)
    sentence = (
        f"Yesterday {name} {rng.choice(world.ACTIVITIES_EN)} at {rng.choice(world.PLACES_EN)}."
    )
    return _Item("Extract the person's name from the sentence.", sentence, name)


def _open_qa(rng: random.Random, w: Entities) -> _Item:
    zh = _is_zh(rng)
    if rng.random() < 0.6:
        country_zh, capital_zh, country_en, capital_en = rng.choice(w.capitals)
        if zh:
            frame = rng.choice(
                ("{c}的首都是哪里？", "{c}的首都是哪座城市？", "请问{c}的首都是什么？")
            )
            return _Item(frame.format(c=country_zh), "", capital_zh)
        frame = rng.choice(
            (
                "What is the capital of {c}?",
                "Which city is the capital of {c}?",
                "Name the capital of {c}.",
            )
        )
        return _Item(frame.format(c=country_en), "", capital_en)
    question_zh, answer_zh, _, question_en, answer_en, _ = rng.choice(w.facts)
    if zh:
        return _Item(rng.choice(("", "请回答：", "问题：")) + question_zh, "", answer_zh)
    return _Item(rng.choice(("", "Please answer: ", "Question: ")) + question_en, "", answer_en)


def _closed_qa(rng: random.Random, w: Entities) -> _Item:
    _, city_zh, _, city_en = rng.choice(w.capitals)
    job_zh, job_en, article = rng.choice(world.JOBS)
    age = rng.randint(20, 60)
    aspect = rng.randrange(3)
    if _is_zh(rng):
        name = rng.choice(world.NAMES_ZH)
        passage = f"{name}住在{city_zh}，今年{age}岁，是一名{job_zh}。"
        question, answer = (
            (f"{name}住在哪里？", city_zh),
            (f"{name}今年几岁？", str(age)),
            (f"{name}的职业是什么？", job_zh),
        )[aspect]
        return _Item(f"阅读短文并回答问题：{question}", passage, answer)
    name = rng.choice(world.NAMES_EN)
    passage = (
        f"{name} lives in {city_en}. {name} is {age} years old and works as {article} {job_en}."
    )
    question, answer = (
        (f"Where does {name} live?", city_en),
        (f"How old is {name}?", str(age)),
        (f"What is {name}'s job?", job_en),
    )[aspect]
    return _Item(f"Read the passage and answer the question: {question}", passage, answer)


def _summarization(rng: random.Random, w: Entities) -> _Item:
    zh = _is_zh(rng)
    topics = world.SUMMARY_TOPICS_ZH if zh else world.SUMMARY_TOPICS_EN
    topic, supports = rng.choice(topics)
    _, city_zh, _, city_en = rng.choice(w.capitals)
    slots = {
        "city": city_zh if zh else city_en,
        "name": rng.choice(world.NAMES_ZH if zh else world.NAMES_EN),
    }
    details = rng.sample(supports, k=rng.randint(2, len(supports)))
    # The topic sentence always leads, so "summary = first sentence" is learnable by a tiny model.
    sentences = [s.format(**slots) for s in (topic, *details)]
    if zh:
        return _Item("用一句话总结下面这段话。", "".join(sentences), sentences[0])
    return _Item(
        "Summarize the following passage in one sentence.", " ".join(sentences), sentences[0]
    )


def _generation(rng: random.Random, w: Entities) -> _Item:
    zh = _is_zh(rng)
    if rng.random() < 0.4:
        occasion_zh, message_zh, occasion_en, message_en = rng.choice(world.GREETINGS)
        if zh:
            name = rng.choice(world.NAMES_ZH)
            frame = rng.choice(("给{name}写一句{o}。", "请为{name}写一句{o}。"))
            return _Item(frame.format(name=name, o=occasion_zh), "", message_zh.format(name=name))
        name = rng.choice(world.NAMES_EN)
        frame = rng.choice(("Write a {o} for {name}.", "Please write {name} a {o}."))
        return _Item(frame.format(name=name, o=occasion_en), "", message_en.format(name=name))
    topic_zh, topic_en = rng.choice(world.GENERATION_TOPICS)
    if zh:
        line = rng.choice(world.GENERATION_LINES_ZH).format(t=topic_zh)
        return _Item(rng.choice(_GENERATION_FRAMES_ZH).format(t=topic_zh), "", line)
    line = rng.choice(world.GENERATION_LINES_EN).format(t=topic_en)
    line = line[0].upper() + line[1:]
    return _Item(rng.choice(_GENERATION_FRAMES_EN).format(t=topic_en), "", line)


def _brainstorming(rng: random.Random, w: Entities) -> _Item:
    category_zh, category_en, members_zh, members_en = rng.choice(w.categories)
    zh = _is_zh(rng)
    members = (members_zh if zh else members_en).split(",")
    k = rng.randint(2, 5)
    # Listed in table order so the same choice always reads the same way.
    chosen = [members[i] for i in sorted(rng.sample(range(len(members)), k))]
    if zh:
        frame = rng.choice(("列出{k}种{c}。", "请说出{k}种{c}。", "写出{k}种常见的{c}。"))
        return _Item(frame.format(k=_COUNT_ZH[k], c=category_zh), "", "、".join(chosen))
    frame = rng.choice(("List {k} {c}.", "Name {k} {c}.", "Give {k} common {c}."))
    return _Item(frame.format(k=_COUNT_EN[k], c=category_en), "", ", ".join(chosen))


def _math_eval(rng: random.Random, w: Entities) -> _Item:
    # The eval's math class mixes arithmetic (seen in general training) with word problems (the
    # math domain), so incremental math tuning can move the math score as in the paper.
    return _word_problem(rng, w) if rng.random() < 0.5 else _arithmetic(rng, w)


_Generator = Callable[[random.Random, Entities], _Item]
_TRAIN_GENERATORS: dict[str, _Generator] = {
    "math": _arithmetic,
    "code": _code,
    "rewrite": _rewrite,
    "classification": _classification,
    "generation": _generation,
    "summarization": _summarization,
    "extract": _extract,
    "open qa": _open_qa,
    "brainstorming": _brainstorming,
    "closed qa": _closed_qa,
}
_EVAL_GENERATORS = {**_TRAIN_GENERATORS, "math": _math_eval}


# --------------------------------------------------------------------------------------------
# Sampling and the public API
# --------------------------------------------------------------------------------------------


def _question(item: _Item) -> str:
    """BELLE eval format: instruction and input joined by a newline when there is an input."""
    return f"{item.instruction}\n{item.input}" if item.input else item.instruction


def _is_held_out(item: _Item) -> bool:
    # crc32 rather than hash(): str hashes are salted per process, this must be stable.
    return zlib.crc32(_question(item).encode("utf-8")) % _HELD_OUT_BUCKETS == 0


def _is_trainable(item: _Item) -> bool:
    return not _is_held_out(item)


def _draw(
    generator: _Generator,
    rng: random.Random,
    entities: Entities,
    accept: Callable[[_Item], bool],
) -> _Item:
    for _ in range(_MAX_DRAWS_PER_ITEM):
        item = generator(rng, entities)
        if accept(item):
            return item
    raise RuntimeError(
        f"{generator.__name__} produced no acceptable item in {_MAX_DRAWS_PER_ITEM} draws: "
        "its question space is exhausted, ask for fewer items"
    )


def _train_row(item: _Item) -> dict[str, str]:
    return {"instruction": item.instruction, "input": item.input, "output": item.output}


def generate_train_samples(
    n: int, *, domain: str = "general", seed: int = 0
) -> list[dict[str, str]]:
    """Generate ``n`` BELLE-style training rows ``{"instruction", "input", "output"}``.

    ``domain="general"`` cycles through all of :data:`RAW_CLASSES` in a freshly shuffled order
    per cycle (so classes stay balanced at any ``n``); ``domain="math"`` yields only Chinese
    school-math word problems with a worked answer ending in the number (the incremental-tuning
    data). Same arguments give the same list. Questions reserved for the eval set never occur,
    nor do the world's pretraining-only entities.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    # Seeded per domain so the general and math streams don't share draws at the same seed.
    rng = random.Random(f"train:{domain}:{seed}")
    if domain == "math":
        return [_train_row(_draw(_word_problem, rng, TAUGHT, _is_trainable)) for _ in range(n)]
    rows: list[dict[str, str]] = []
    order: list[str] = []
    while len(rows) < n:
        if not order:
            order = rng.sample(RAW_CLASSES, len(RAW_CLASSES))
        rows.append(_train_row(_draw(_TRAIN_GENERATORS[order.pop()], rng, TAUGHT, _is_trainable)))
    return rows


def _eval_rows(raw_class: str, n: int, rng: random.Random) -> list[dict[str, str]]:
    seen: set[str] = set()
    rows = []
    for _ in range(n):
        item = _draw(
            _EVAL_GENERATORS[raw_class],
            rng,
            ALL,
            lambda item: _is_held_out(item) and _question(item) not in seen,
        )
        question = _question(item)
        seen.add(question)
        rows.append({"question": question, "std_answer": item.output, "class": raw_class})
    return rows


def generate_eval_set(n_per_class: int = 5, *, seed: int = 1234) -> list[dict[str, str]]:
    """Generate a BELLE-format eval set: rows ``{"question", "std_answer", "class"}``.

    ``n_per_class`` distinct rows per raw class, grouped in :data:`RAW_CLASSES` order. Only
    held-out questions are used, so none appears verbatim in training data of any seed. Unlike
    BELLE's, every row has a gold answer (the demo's open-ended answers are templated), so the
    offline reference judge can score all 9 categories and the macro average is defined. Every class
    holds at least 30 distinct held-out questions; asking for more than one holds raises
    RuntimeError.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 0:
        raise ValueError(f"n_per_class must be a non-negative int, got {n_per_class!r}")
    rng = random.Random(f"eval:{seed}")
    return [row for raw_class in RAW_CLASSES for row in _eval_rows(raw_class, n_per_class, rng)]


def held_out_word_problems(n: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` distinct school-math word problems of the kind the math domain trains on, all held
    out of training (no training sample of any seed asks them): rows ``{"question", "solution"}``,
    the worked answer as training writes one. The demo's target benchmark."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    rng = random.Random(f"benchmark:math:{seed}")
    seen: set[str] = set()
    rows = []
    for _ in range(n):
        item = _draw(
            _word_problem,
            rng,
            TAUGHT,
            lambda item: _is_held_out(item) and item.instruction not in seen,
        )
        seen.add(item.instruction)
        rows.append({"question": item.instruction, "solution": item.output})
    return rows


def write_jsonl(rows: Iterable[dict[str, str]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as UTF-8 JSON Lines (Chinese kept readable), creating parent dirs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
