"""The demo's own benchmark panel: two lm-eval tasks over data generated here, plus the world
text a base's held-out perplexity is measured on.

- `lorabench_retention` (role retention): multiple-choice sentence completions on the world's
  pretraining-only facts (`world.ALL` minus `world.TAUGHT`: no instruction sample mentions them),
  in the very wordings the pretraining text states them; the choices differ only in the entity
  completed (a capital, a country, a word, a category, a function's description). A base knows
  them from pretraining alone, so a tuned model's loss of them is forgetting.
- `lorabench_target` (role target): school-math word problems of the kind `data=math_0.25m`
  trains on, all held out of every training sample (`corpus.held_out_word_problems`), in the
  instruction format; scored in loss terms: the log-probability of the worked answer, per
  character (lm-eval's loglikelihood request). The tiny models never get a sum right, so an
  exact match of the answer's number reads 0 before and after tuning and cannot show learning;
  how much likelier the worked solutions became can.

The task YAMLs are the repository's (`lorabench/demo/benchmarks/*.yaml`); `write_panel` writes the
data and, beside it, one YAML per task that includes the repository's and names its data file,
so the directory is an lm-eval `--include_path` of its own.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from lorabench.data.prompts import format_prompt
from lorabench.demo import world
from lorabench.demo.corpus import held_out_word_problems
from lorabench.identity import digest

RETENTION_TASK = "lorabench_retention"
TARGET_TASK = "lorabench_target"
TASKS = (RETENTION_TASK, TARGET_TASK)
TEMPLATES = Path(__file__).parent / "benchmarks"
"""The repository's task YAMLs (everything but the data file)."""
PANEL_VERSION = 2
"""Raised when the generated items change: part of the panel's directory name."""


def _pretraining_only(table: Sequence) -> list:
    return [e for i, e in enumerate(table) if i % world.PRETRAIN_ONLY_EVERY == 2]


def _completion(frame: str, slots: dict[str, str], alternatives: dict[str, list[str]]):
    """A frame's sentence split where its last-placed slot starts: (context, the true ending,
    the endings with each alternative value in that slot)."""
    asked = max(slots, key=lambda k: frame.index("{" + k + "}"))
    head, _, tail = frame.partition("{" + asked + "}")
    context = head.format(**slots)
    ending = "{" + asked + "}" + tail

    def end(value: str) -> str:
        return ending.format(**{**slots, asked: value})

    return context, end(slots[asked]), [end(v) for v in alternatives[asked] if v != slots[asked]]


def _capital_statements() -> Iterator[tuple[str, str, list[str]]]:
    for country_zh, capital_zh, country_en, capital_en in _pretraining_only(world.CAPITALS):
        for zh, frames in ((True, world.CAPITAL_FRAMES_ZH), (False, world.CAPITAL_FRAMES_EN)):
            slots = {"c": country_zh, "k": capital_zh} if zh else {"c": country_en, "k": capital_en}
            others = {
                "c": [row[0 if zh else 2] for row in world.CAPITALS],
                "k": [row[1 if zh else 3] for row in world.CAPITALS],
            }
            for frame in frames:
                yield _completion(frame, slots, others)


def _dictionary_statements() -> Iterator[tuple[str, str, list[str]]]:
    others = {"z": [z for z, _ in world.DICTIONARY], "e": [e for _, e in world.DICTIONARY]}
    for z, e in _pretraining_only(world.DICTIONARY):
        for frame in (*world.DICTIONARY_FRAMES_ZH, *world.DICTIONARY_FRAMES_EN):
            yield _completion(frame, {"z": z, "e": e}, others)


def _fact_statements() -> Iterator[tuple[str, str, list[str]]]:
    for fact in _pretraining_only(world.FACTS):
        for answer, statement, column in ((fact[1], fact[2], 1), (fact[4], fact[5], 4)):
            frame = statement.replace(answer, "{a}", 1)
            others = {"a": [row[column] for row in world.FACTS]}
            yield _completion(frame, {"a": answer}, others)


def _category_statements() -> Iterator[tuple[str, str, list[str]]]:
    for row in _pretraining_only(world.CATEGORIES):
        for zh in (True, False):
            frame = world.CATEGORY_MEMBER_ZH if zh else world.CATEGORY_MEMBER_EN
            column = 0 if zh else 1
            others = {"c": [r[column] for r in world.CATEGORIES]}
            for member in row[2 if zh else 3].split(","):
                yield _completion(frame, {"m": member, "c": row[column]}, others)


def _code_statements() -> Iterator[tuple[str, str, list[str]]]:
    for name, desc_zh, desc_en, _ in _pretraining_only(world.CODE_FUNCTIONS):
        for p in world.CODE_PARAMS:
            for frame, desc, column in (
                (world.CODE_INTRO_ZH, desc_zh, 1),
                (world.CODE_INTRO_EN, desc_en, 2),
            ):
                others = {"d": [row[column].format(p=p) for row in world.CODE_FUNCTIONS]}
                yield _completion(frame, {"f": name, "d": desc.format(p=p)}, others)


def retention_items(rounds: int, choices: int, seed: int = 0) -> list[dict]:
    """Multiple-choice rows `{"id", "context", "choices", "label"}`: every pretraining-only
    statement `rounds` times, each time with `choices - 1` other distractors drawn from its table
    and the choices in a fresh order."""
    rng = random.Random(f"benchmark:retention:{seed}")
    statements = [
        *_capital_statements(),
        *_dictionary_statements(),
        *_fact_statements(),
        *_category_statements(),
        *_code_statements(),
    ]
    rows = []
    for r in range(rounds):
        for i, (context, true, wrong) in enumerate(statements):
            options = [true, *rng.sample(sorted(set(wrong)), choices - 1)]
            rng.shuffle(options)
            rows.append(
                {
                    "id": f"r{r}-s{i}",
                    # English sentences start a document's line: capitalised, as the text has them.
                    "context": context[:1].upper() + context[1:],
                    "choices": options,
                    "label": options.index(true),
                }
            )
    return rows


def target_items(n: int, seed: int = 0) -> list[dict]:
    """Held-out word problems as rows `{"id", "prompt", "solution"}`: the instruction format's
    prompt and the worked answer, each as training formats them."""
    return [
        {"id": f"m{i}", "prompt": format_prompt(row["question"]), "solution": row["solution"]}
        for i, row in enumerate(held_out_word_problems(n, seed=seed))
    ]


def score_target(doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
    """lm-eval's `process_results` of `lorabench_target`: the worked answer's log-likelihood
    given the prompt (nats), per character of the answer (higher: likelier)."""
    loglikelihood, _greedy = results[0]
    return {"logprob_per_char": loglikelihood / len(doc["solution"])}


def write_panel(root: Path, retention_rounds: int, retention_choices: int, math_items: int) -> Path:
    """The panel's directory under `root`, an lm-eval include path: written once per panel
    config, whole (staged, then renamed into place: a process that finds it reads all of it)."""
    key = digest([PANEL_VERSION, retention_rounds, retention_choices, math_items])[:12]
    directory = (root / f"demo-panel-{key}").resolve()
    if directory.is_dir():
        return directory
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".demo-panel-"))
    data = {
        RETENTION_TASK: retention_items(retention_rounds, retention_choices),
        TARGET_TASK: target_items(math_items),
    }
    for task, rows in data.items():
        (staging / f"{task}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        yaml = string.Template(TASK_YAML).substitute(
            template=TEMPLATES / f"{task}.yaml", task=task, data=directory / f"{task}.jsonl"
        )
        (staging / f"{task}.yaml").write_text(yaml)
    try:
        staging.rename(directory)
    except OSError:  # another process put the same panel there first
        shutil.rmtree(staging, ignore_errors=True)
    return directory


TASK_YAML = """\
# Written by lorabench.demo.panel: the repository's task over this directory's generated data.
include: $template
task: $task
dataset_kwargs:
  data_files:
    test: $data
"""
