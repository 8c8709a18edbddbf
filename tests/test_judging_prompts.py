"""Judge messages: the project's instructions for every class, the layouts (the project's and
BELLE's), BELLE's file loaded faithfully (from LORABENCH_BELLE_DIR when set, never copied here),
and its checked download. BELLE's messages byte for byte: tests/test_judging_belle.py."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from lorabench.errors import DataError
from lorabench.evaluation.eval_set import CATEGORY_OF_LABEL, EvalItem, category_of, load_eval_set
from lorabench.judging import (
    BELLE_LAYOUT,
    BELLE_NO_GOLD_CLASSES,
    BELLE_PROMPT_SHA256,
    PROJECT_LAYOUT,
    PROJECT_PROMPTS,
    BelleLayout,
    JudgeError,
    JudgePrompts,
    Layout,
    download_belle_prompts,
    load_belle_prompts,
)
from lorabench.judging import prompts as prompts_module


def _item(raw_class: str, gold: str = "") -> EvalItem:
    return EvalItem("QUESTION-TEXT", gold, raw_class, category_of(raw_class))


@pytest.mark.parametrize("raw_class", sorted(CATEGORY_OF_LABEL))
def test_project_prompts_cover_every_class_and_ask_for_the_score_format(raw_class: str) -> None:
    message = PROJECT_PROMPTS.build(_item(raw_class, "GOLD-TEXT"), "MODEL-ANSWER")
    instruction = PROJECT_PROMPTS.instruction_for(raw_class)
    assert message.startswith(instruction) and "得分:" in instruction and "0到1" in instruction
    # instruction, question, gold answer, model answer, in that order
    positions = [message.index(s) for s in ("QUESTION-TEXT", "GOLD-TEXT", "MODEL-ANSWER")]
    assert positions == sorted(positions)


def test_gold_answer_is_included_only_when_the_item_has_one() -> None:
    with_gold = PROJECT_PROMPTS.build(_item("rewrite", "GOLD-TEXT"), "A")
    without = PROJECT_PROMPTS.build(_item("rewrite", ""), "A")
    assert "标准答案：\nGOLD-TEXT" in with_gold
    assert "标准答案：" not in without


def test_math_and_code_get_different_instructions() -> None:
    assert PROJECT_PROMPTS.instruction_for("math") != PROJECT_PROMPTS.instruction_for("code")


def test_answers_with_braces_are_kept_verbatim() -> None:
    answer = "def f(x):\n    return {'a': x}  # {answer}"
    assert answer in PROJECT_PROMPTS.build(_item("code", "{reference}"), answer)


def test_missing_instruction_is_a_clear_error() -> None:
    partial = JudgePrompts({"math": "m"}, source="mine")
    with pytest.raises(JudgeError, match=r"\(mine\) have no instruction for class 'code'"):
        partial.build(_item("code"), "a")


def test_belle_prompts_load_with_normalised_labels(belle_dir: Path) -> None:
    prompts = load_belle_prompts(belle_dir / "eval_prompt.json", sha256=BELLE_PROMPT_SHA256)
    assert set(prompts.instructions) == set(CATEGORY_OF_LABEL)  # incl. translation
    assert prompts.layout == BELLE_LAYOUT and prompts.source == f"belle:{BELLE_PROMPT_SHA256[:12]}"
    text = (belle_dir / "eval_prompt.json").read_text(encoding="utf-8")
    raw = [json.loads(line) for line in text.splitlines()]
    by_class = {row["class"]: row["prompt"] for row in raw}
    assert prompts.instruction_for("closed qa") == by_class["closed\u00a0QA"]
    assert prompts.instruction_for("open qa") == by_class["open QA"]


@pytest.mark.parametrize("translation", ["paper", "current"])
def test_belle_prompts_build_a_message_for_every_eval_item(
    belle_dir: Path, translation: str
) -> None:
    prompts = load_belle_prompts(belle_dir / "eval_prompt.json", layout=BelleLayout(translation))
    layout = BelleLayout(translation)
    for item in load_eval_set(belle_dir / "eval_set.json"):
        message = prompts.build(item, "模型的回答")
        assert message.startswith(prompts.instruction_for(layout.instruction_class(item)) + " ")
        assert ("标准回答:" in message) == layout.sends_gold(item)


def test_belle_instructions_also_fit_the_project_layout(belle_dir: Path) -> None:
    belle = load_belle_prompts(belle_dir / "eval_prompt.json")
    prompts = JudgePrompts(belle.instructions, layout=PROJECT_LAYOUT, source=belle.source)
    for item in load_eval_set(belle_dir / "eval_set.json"):
        message = prompts.build(item, "模型的回答")
        assert message.startswith(prompts.instruction_for(item.raw_class))
        assert ("标准答案：" in message) == bool(item.std_answer.strip())


@pytest.mark.parametrize("raw_class", sorted(CATEGORY_OF_LABEL))
@pytest.mark.parametrize("gold", ["", "GOLD"])
def test_belle_layout_decides_by_class(raw_class: str, gold: str) -> None:
    item = _item(raw_class, gold)
    paper, current = BelleLayout("paper"), BelleLayout("current")
    if raw_class == "rewrite" and gold:  # a former translation item
        assert (paper.instruction_class(item), paper.sends_gold(item)) == ("translation", True)
        assert (current.instruction_class(item), current.sends_gold(item)) == ("rewrite", False)
    else:
        for layout in (paper, current):
            assert layout.instruction_class(item) == raw_class
            assert layout.sends_gold(item) == (raw_class not in BELLE_NO_GOLD_CLASSES)
    assert BELLE_NO_GOLD_CLASSES == {"generation", "brainstorming", "rewrite"}


def test_judge_prompts_use_any_layout_object() -> None:
    class Upper:
        name = "upper"

        def build(self, instruction_for, item: EvalItem, answer: str) -> str:
            return f"{instruction_for(item.raw_class)}|{item.question}|{answer}".upper()

    prompts = JudgePrompts({"math": "m"}, layout=Upper(), source="mine")
    assert prompts.build(_item("math", "1"), "a") == "M|QUESTION-TEXT|A"
    custom = Layout("{instruction}+{reference}", "{instruction}-", name="mine")
    assert JudgePrompts({"math": "m"}, layout=custom).build(_item("math", "g"), "a") == "m+g"
    assert PROJECT_LAYOUT.name == "project" and BELLE_LAYOUT.name == "belle(translation=paper)"


def test_belle_prompts_checksum_is_checked(belle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="checksum"):
        load_belle_prompts(belle_dir / "eval_prompt.json", sha256="0" * 64)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"class": "poetry", "prompt": "p"}', "unknown class 'poetry'"),
        ('{"class": "math"}', "'class' and 'prompt'"),
        ("{not json", "not valid JSON"),
        ('{"class": "MATH", "prompt": "again"}', "appears twice"),
    ],
)
def test_bad_prompt_files_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "eval_prompt.json"
    first = json.dumps({"class": "math", "prompt": "判分"}, ensure_ascii=False)
    path.write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"eval_prompt.json:2: .*{message}"):
        load_belle_prompts(path)


def test_missing_prompt_file_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download_belle_prompts"):
        load_belle_prompts(tmp_path / "nope.json")


def test_download_uses_the_pinned_url_and_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A prompt file of our own, served over real HTTP in place of GitHub.
    payload = json.dumps(
        {"class": "Closed\u00a0QA", "prompt": "自写的判分说明"}, ensure_ascii=False
    )
    root = tmp_path / "www"
    root.mkdir()
    (root / "eval_prompt.json").write_text(payload, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/eval_prompt.json"
        digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        monkeypatch.setattr(prompts_module, "BELLE_PROMPT_URL", url)
        monkeypatch.setattr(prompts_module, "BELLE_PROMPT_SHA256", digest)
        path = download_belle_prompts(tmp_path / "got" / "eval_prompt.json")
        assert load_belle_prompts(path).instruction_for("closed qa") == "自写的判分说明"
        monkeypatch.setattr(prompts_module, "BELLE_PROMPT_SHA256", "0" * 64)
        with pytest.raises(DataError, match="checksum"):
            download_belle_prompts(tmp_path / "other.json")
    finally:
        server.shutdown()
        server.server_close()


def test_pinned_url_points_at_the_papers_commit() -> None:
    assert prompts_module.BELLE_PROMPT_URL == (
        "https://raw.githubusercontent.com/LianjiaTech/BELLE/"
        "645084d36454cdeb4e7f1ce9b2f3426bac39f1f9/eval/eval_prompt.json"
    )
