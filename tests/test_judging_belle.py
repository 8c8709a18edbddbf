"""BELLE's judge request, byte for byte, sent by the real OpenAIJudge to an OpenAI-compatible
server on 127.0.0.1: the two message forms of BELLE's scoring page, the former translation
items under `belle_translation=paper` and `current`, temperature 0 and max_tokens 3000, and the
model that answered (also on a fully cached rerun). Also the judge factory and its errors.

The expected messages are written out here from the rules of BELLE's page (one user message;
for raw classes generation, brainstorming and rewrite no gold answer; otherwise the second form),
with every separator spelled as a code point, not produced by the code under test. They run on a
synthetic prompt file always, and on BELLE's own files beside the repository when present.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lorabench.config import compose, validate
from lorabench.config.schema import BELLE_TRANSLATIONS as CONFIG_BELLE_TRANSLATIONS
from lorabench.config.schema import JudgeConfig
from lorabench.errors import ConfigError, DataError
from lorabench.evaluation.eval_set import EvalItem, category_of, load_eval_set
from lorabench.judging import (
    BELLE_LAYOUT,
    BELLE_PROMPT_SHA256,
    BELLE_TRANSLATIONS,
    PROJECT_PROMPTS,
    UNKNOWN_SERVED_MODEL,
    BelleLayout,
    JudgeCache,
    JudgeRequest,
    OpenAIJudge,
    ReferenceJudge,
    build_judge,
    load_belle_prompts,
)
from lorabench.judging import prompts as prompts_module
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import FakeOpenAIServer, reply

SERVED = "gpt-3.5-turbo-0125"

# ---- the expected messages, from the rules of BELLE's page ------------------------------------
# U+0020 space, U+FF1A full-width colon, U+003A half-width colon, U+0027 apostrophe,
# U+3002 ideographic full stop, U+FF0C full-width comma.
_TAIL = "\u0027\u3002请针对模型回答给出得分\uff0c顺便给出理由\uff1a"


def no_gold_message(prompt: str, question: str, answer: str) -> str:
    """`{PROMPT} {QUESTION}  模型回答： '{ANSWER}'。请针对模型回答给出得分，顺便给出理由：`"""
    return f"{prompt}\u0020{question}\u0020\u0020模型回答\uff1a\u0020\u0027{answer}{_TAIL}"


def gold_message(prompt: str, question: str, gold: str, answer: str) -> str:
    """`{PROMPT} {QUESTION} 标准回答:{STD_ANSWER}  模型回答：' {ANSWER}'。请针对…理由：`"""
    return (
        f"{prompt}\u0020{question}\u0020标准回答\u003a{gold}"
        f"\u0020\u0020模型回答\uff1a\u0027\u0020{answer}{_TAIL}"
    )


def test_the_expected_forms_spell_the_pages_characters() -> None:
    # A guard on the helpers above, against the page's template as the note quotes it.
    tail = "。请针对模型回答给出得分，顺便给出理由："
    assert no_gold_message("P", "Q", "A") == "P Q  模型回答： 'A'" + tail
    assert gold_message("P", "Q", "S", "A") == "P Q 标准回答:S  模型回答：' A'" + tail


# ---- a synthetic prompt file and items -----------------------------------------------------
# Labels spelt as in BELLE's files (open QA, closed<NBSP>QA), prompts that are obviously ours.
SYNTHETIC_PROMPTS = {
    "math": 'PROMPT-math：请按照"得分:"这样的形式输出分数。',
    "code": 'PROMPT-code {answer} 请按照"得分:"这样的形式输出分数。',
    "classification": "PROMPT-classification",
    "extract": "PROMPT-extract",
    "open QA": "PROMPT-open-qa",
    "closed\u00a0QA": "PROMPT-closed-qa ",  # a trailing space is kept
    "generation": "PROMPT-generation",
    "brainstorming": "PROMPT-brainstorming",
    "rewrite": "PROMPT-rewrite",
    "translation": "PROMPT-translation",
    "summarization": "PROMPT-summarization",
}


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "eval_prompt.json"
    lines = [json.dumps({"class": c, "prompt": p}, ensure_ascii=False) for c, p in
             SYNTHETIC_PROMPTS.items()]  # fmt: skip
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _item(raw_class: str, question: str, gold: str) -> EvalItem:
    label = raw_class.replace("\u00a0", " ").lower()
    return EvalItem(question, gold, label, category_of(label))


# (name, item, answer, expected under paper, expected under current)
CASES: list[tuple[str, EvalItem, str, str, str]] = []


def _case(name: str, item: EvalItem, answer: str, paper: str, current: str | None = None) -> None:
    CASES.append((name, item, answer, paper, paper if current is None else current))


_case(
    "closed qa (gold)",
    _item("closed\u00a0qa", "根据下文回答：'天空'是什么颜色？\n文本：天空是蓝色的。", "蓝色"),
    " 蓝色。 ",
    gold_message(
        "PROMPT-closed-qa ",
        "根据下文回答：'天空'是什么颜色？\n文本：天空是蓝色的。",
        "蓝色",
        " 蓝色。 ",
    ),
)
_case(
    "math (gold)",
    _item("math", "1+1={?}", "2"),
    "答案是 {2}",
    gold_message('PROMPT-math：请按照"得分:"这样的形式输出分数。', "1+1={?}", "2", "答案是 {2}"),
)
_case(
    "code (gold, braces in the prompt)",
    _item("code", "写一个函数", "def f():\n    return {}"),
    "def f(x): return {'a': x}",
    gold_message(
        'PROMPT-code {answer} 请按照"得分:"这样的形式输出分数。',
        "写一个函数",
        "def f():\n    return {}",
        "def f(x): return {'a': x}",
    ),
)
_case(
    "open qa (gold)",
    _item("open qa", "北京是哪国的首都？", "中国"),
    "中国",
    gold_message("PROMPT-open-qa", "北京是哪国的首都？", "中国", "中国"),
)
_case(
    "generation (no gold)",
    _item("generation", "写一首诗。", ""),
    "春眠不觉晓",
    no_gold_message("PROMPT-generation", "写一首诗。", "春眠不觉晓"),
)
_case(
    "generation with a std_answer (still no gold)",
    _item("generation", "写一句口号。", "GOLD-NOT-SENT"),
    "口号",
    no_gold_message("PROMPT-generation", "写一句口号。", "口号"),
)
_case(
    "brainstorming (no gold)",
    _item("brainstorming", "周末做什么？", ""),
    "1. 爬山\n2. 看书",
    no_gold_message("PROMPT-brainstorming", "周末做什么？", "1. 爬山\n2. 看书"),
)
_case(
    "rewrite without gold",
    _item("rewrite", "把这句话改成被动句：我吃了苹果。", ""),
    "苹果被我吃了。",
    no_gold_message("PROMPT-rewrite", "把这句话改成被动句：我吃了苹果。", "苹果被我吃了。"),
)
_case(
    "former translation (rewrite with gold)",
    _item("rewrite", "把下面的句子翻译成英文：你好。", "Hello."),
    "Hello!",
    gold_message("PROMPT-translation", "把下面的句子翻译成英文：你好。", "Hello.", "Hello!"),
    no_gold_message("PROMPT-rewrite", "把下面的句子翻译成英文：你好。", "Hello!"),
)
_case(
    "translation label of an older eval set (gold either way)",
    _item("translation", "Translate: 谢谢", "Thanks"),
    "Thank you",
    gold_message("PROMPT-translation", "Translate: 谢谢", "Thanks", "Thank you"),
)

# ---- the server and a judge built from the config -------------------------------------------


@pytest.fixture
def server(api_key: str) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=api_key, served_model=SERVED, default=reply("得分:0.8")) as srv:
        yield srv


def _judge_cfg(server: FakeOpenAIServer | None, **overrides: Any) -> JudgeConfig:
    """The `judge` section as the paper profile composes it, pointed at the local server."""
    base = ["judge.concurrency=4", "judge.max_retries=0", "judge.timeout=10"]
    if server is not None:
        base += [f"judge.base_url={server.base_url}", f"judge.api_key_env={KEY_ENV}"]
    extra = [f"judge.{k}={v}" for k, v in overrides.items()]
    return validate(compose([*base, *extra])).judge


def _received(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [r.body for r in server.chat_requests]


def _contents(server: FakeOpenAIServer) -> list[str]:
    bodies = _received(server)
    for body in bodies:
        [message] = body["messages"]  # one message, no system message
        assert message["role"] == "user"
    return [body["messages"][0]["content"] for body in bodies]


@pytest.mark.parametrize("variant", ["paper", "current"])
def test_belle_requests_arrive_byte_for_byte(
    server: FakeOpenAIServer, prompt_file: Path, tmp_path: Path, variant: str
) -> None:
    cfg = _judge_cfg(server, prompts=prompt_file, belle_translation=variant)
    judge = build_judge(cfg, tmp_path / "cache")
    requests = [JudgeRequest(item, answer) for _, item, answer, _, _ in CASES]
    judgements = judge.judge_all(requests, progress=False)
    assert [j.status for j in judgements] == ["ok"] * len(CASES)

    expected = {name: (paper if variant == "paper" else current)
                for name, _, _, paper, current in CASES}  # fmt: skip
    received = _contents(server)
    assert len(received) == len(CASES)
    received_bytes = sorted(m.encode("utf-8") for m in received)
    assert received_bytes == sorted(m.encode("utf-8") for m in expected.values())
    for name, message in expected.items():  # each one, named, for a readable failure
        assert message in received, name
    # and what the judge says it sends is what arrived
    assert sorted(judge.prompt_for(r) for r in requests) == sorted(received)


def test_the_request_body_is_belles(server: FakeOpenAIServer, prompt_file, tmp_path) -> None:
    judge = build_judge(_judge_cfg(server, prompts=prompt_file), tmp_path / "cache")
    _, item, answer, _, _ = CASES[0]
    judge.judge_all([JudgeRequest(item, answer)], progress=False)
    [request] = server.chat_requests
    body = request.body
    assert body["model"] == "gpt-3.5-turbo"
    assert body["temperature"] == 0.0 and body["max_tokens"] == 3000
    assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
    assert not any(m["role"] == "system" for m in body["messages"])
    raw = json.loads(request.raw)  # the bytes on the wire decode to the same body
    assert raw == body


@pytest.mark.parametrize("variant", BELLE_TRANSLATIONS)
def test_params_say_which_variant_was_used(prompt_file: Path, tmp_path: Path, variant) -> None:
    judge = build_judge(_judge_cfg(None, prompts=prompt_file, belle_translation=variant), tmp_path)
    params = judge.params()
    digest = hashlib.sha256(prompt_file.read_bytes()).hexdigest()
    assert params["prompts"] == f"belle:{digest[:12]}"
    assert params["prompt_layout"] == f"belle(translation={variant})"
    assert params["temperature"] == 0.0 and params["max_tokens"] == 3000
    assert f"belle(translation={variant})" in repr(judge)


def test_served_model_is_recorded_and_survives_a_fully_cached_rerun(
    server: FakeOpenAIServer, prompt_file: Path, tmp_path: Path, monkeypatch
) -> None:
    cfg = _judge_cfg(server, prompts=prompt_file)
    requests = [JudgeRequest(item, answer) for _, item, answer, _, _ in CASES]
    first = build_judge(cfg, tmp_path / "cache")
    assert isinstance(first, OpenAIJudge) and first.served_models == ()
    judgements = first.judge_all(requests, progress=False)
    assert first.served_models == (SERVED,)
    assert {j.served_model for j in judgements} == {SERVED}
    assert judgements[0].to_dict()["served_model"] == SERVED
    first.close()
    calls = server.chat_calls

    monkeypatch.delenv(KEY_ENV)  # a fully cached run needs no key and calls nobody
    second = build_judge(cfg, tmp_path / "cache")
    again = second.judge_all(requests, progress=False)
    assert server.chat_calls == calls and all(j.cached for j in again)
    assert second.served_models == (SERVED,)
    assert {j.served_model for j in again} == {SERVED}


def test_a_cache_without_the_served_model_column_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the schema before served models were recorded
        conn.execute(
            "CREATE TABLE replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt TEXT NOT NULL,"
            " reply TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
            " completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
    request = JudgeRequest(CASES[0][1], CASES[0][2])
    probe = OpenAIJudge(cache_path=None, prompts=PROJECT_PROMPTS, api_key_env=None)
    key = probe.key_for(probe.prompt_for(request))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO replies (key, model, prompt, reply, prompt_tokens, completion_tokens,"
            " created) VALUES (?, 'gpt-3.5-turbo', 'p', '得分:1', 3, 4, 0)",
            (key,),
        )
    cache = JudgeCache(db)
    assert cache.get(key).served_model is None  # the old row: unknown
    cache.put("new", model="m", prompt="p", reply="r", prompt_tokens=1, completion_tokens=1,
              served_model=SERVED)  # fmt: skip
    assert cache.get("new").served_model == SERVED
    cache.close()
    JudgeCache(db).close()  # opening a migrated cache again is fine
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(replies)")]
    assert columns.count("served_model") == 1

    judge = OpenAIJudge(cache_path=db, prompts=PROJECT_PROMPTS, api_key_env=None)
    [judgement] = judge.judge_all([request], progress=False)  # from the cache: no server at all
    assert judgement.cached and judgement.score == 1.0 and judgement.served_model == ""
    assert judge.served_models == (UNKNOWN_SERVED_MODEL,)
    judge.close()


def test_the_reference_judge_is_its_own_served_model() -> None:
    judge = ReferenceJudge("rouge_l")
    assert judge.served_models == ("reference:rouge_l",)


# ---- BELLE's own files, when present ---------------------------------------------------------


def _answer_to(question: str) -> str:
    """A model answer of our own per question (quotes, a newline and a trailing space kept)."""
    return f"模型对'{question[:8]}'的回答\n第二行 "


def _belle_expected(belle_dir: Path, variant: str) -> list[str]:
    """Every message of BELLE's eval set, from the raw JSON rows and the page's rules."""
    prompts: dict[str, str] = {}
    for line in (belle_dir / "eval_prompt.json").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prompts[row["class"].replace("\u00a0", " ").lower()] = row["prompt"]
    messages = []
    for line in (belle_dir / "eval_set.json").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        label = row["class"].replace("\u00a0", " ").lower()
        question, gold = row["question"], row["std_answer"]
        answer = _answer_to(question)
        if label == "rewrite" and gold and variant == "paper":
            messages.append(gold_message(prompts["translation"], question, gold, answer))
        elif label in ("generation", "brainstorming", "rewrite"):
            messages.append(no_gold_message(prompts[label], question, answer))
        else:
            messages.append(gold_message(prompts[label], question, gold, answer))
    return messages


@pytest.mark.parametrize("variant", ["paper", "current"])
def test_every_belle_item_builds_the_pages_message(belle_dir: Path, variant: str) -> None:
    prompts = load_belle_prompts(
        belle_dir / "eval_prompt.json", BELLE_PROMPT_SHA256, layout=BelleLayout(variant)
    )
    items = load_eval_set(belle_dir / "eval_set.json")
    expected = _belle_expected(belle_dir, variant)
    built = [prompts.build(i, _answer_to(i.question)) for i in items]
    assert len(built) == len(expected) == 1000
    for i, (got, want) in enumerate(zip(built, expected, strict=True)):
        assert got.encode("utf-8") == want.encode("utf-8"), i
    with_gold = sum("标准回答:" in m for m in built)
    assert with_gold == (1000 - 369 if variant == "paper" else 1000 - 408)


@pytest.mark.parametrize("variant", ["paper", "current"])
def test_belle_files_through_the_server(
    belle_dir: Path, server: FakeOpenAIServer, tmp_path: Path, variant: str, monkeypatch
) -> None:
    # judge.prompts=belle with BELLE's file already in the cache: no download is attempted.
    cache_dir = tmp_path / "cache"
    (cache_dir / "eval").mkdir(parents=True)
    (cache_dir / "eval" / "eval_prompt.json").write_bytes(
        (belle_dir / "eval_prompt.json").read_bytes()
    )
    monkeypatch.setattr(prompts_module, "BELLE_PROMPT_URL", "http://127.0.0.1:9/unreachable")
    judge = build_judge(_judge_cfg(server, belle_translation=variant), cache_dir)
    assert judge.params()["prompts"] == f"belle:{BELLE_PROMPT_SHA256[:12]}"

    items = load_eval_set(belle_dir / "eval_set.json")
    expected = _belle_expected(belle_dir, variant)
    # One item of each raw class, a rewrite item without gold, and former translation items.
    picked: dict[str, int] = {}
    for i, item in enumerate(items):
        picked.setdefault(item.raw_class + ("+gold" if item.std_answer else ""), i)
    former = [i for i, item in enumerate(items) if item.raw_class == "rewrite" and item.std_answer]
    chosen = sorted({*picked.values(), *former[:3]})
    assert {"generation", "brainstorming", "rewrite", "rewrite+gold", "closed qa+gold"} <= set(
        picked
    )
    requests = [JudgeRequest(items[i], _answer_to(items[i].question)) for i in chosen]
    judgements = judge.judge_all(requests, progress=False)
    assert all(j.status == "ok" and j.served_model == SERVED for j in judgements)
    received = sorted(m.encode("utf-8") for m in _contents(server))
    assert received == sorted(expected[i].encode("utf-8") for i in chosen)
    for body in _received(server):
        assert body["temperature"] == 0.0 and body["max_tokens"] == 3000
    assert judge.served_models == (SERVED,)


# ---- the factory: configuration and bad input --------------------------------------------------


def test_the_paper_profile_judges_with_belles_prompts_and_settings() -> None:
    cfg = validate(compose([])).judge
    assert (cfg.name, cfg.prompts, cfg.belle_translation) == ("openai", "belle", "paper")
    assert (cfg.temperature, cfg.max_tokens) == (0.0, 3000)
    assert validate(compose(["judge.prompts=project"])).judge.prompts == "project"


def test_belle_offline_without_a_cached_copy_says_how_to_point_at_one(
    tmp_path: Path, monkeypatch
) -> None:
    with FakeOpenAIServer() as srv:  # a port that was just closed: nothing listens there
        url = f"{srv.base_url}/eval_prompt.json"
    monkeypatch.setattr(prompts_module, "BELLE_PROMPT_URL", url)
    with pytest.raises(DataError) as err:
        build_judge(_judge_cfg(None), tmp_path / "cache")
    message = str(err.value)
    assert "judge.prompts" in message and "judge.prompts=/path/to/eval_prompt.json" in message
    assert str(tmp_path / "cache" / "eval" / "eval_prompt.json") in message
    assert not (tmp_path / "cache" / "judge_cache.sqlite").exists()  # nothing built


def test_a_prompt_path_that_is_not_a_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"judge\.prompts=.*nope\.json.*/path/to/eval_prompt"):
        validate(compose([f"judge.prompts={tmp_path / 'nope.json'}"]))


def test_project_prompts_keep_their_own_layout(tmp_path: Path) -> None:
    judge = build_judge(_judge_cfg(None, prompts="project"), tmp_path)
    assert isinstance(judge, OpenAIJudge) and judge.prompts is PROJECT_PROMPTS
    assert judge.params()["prompt_layout"] == "project"
    message = judge.prompt_for(JudgeRequest(CASES[0][1], "A"))
    assert "标准答案：\n蓝色" in message and "标准回答:" not in message


def test_the_reference_judge_is_built_offline(tmp_path: Path) -> None:
    cfg = validate(compose(["judge=reference", "judge.model=rouge_l"])).judge
    judge = build_judge(cfg, tmp_path)
    assert isinstance(judge, ReferenceJudge) and judge.name == "reference:rouge_l"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("judge.temperature=-0.1", "judge.temperature=-0.1"),
        ("judge.max_tokens=0", "judge.max_tokens=0"),
        ("judge.belle_translation=today", "judge.belle_translation='today'"),
        ("judge.concurrency=0", "judge.concurrency=0"),
        ("judge.max_retries=-1", "judge.max_retries=-1"),
        ("judge.timeout=0", "judge.timeout=0"),
        ("judge.model=''", "judge.model=''"),
        ("judge.prompts=''", "judge.prompts=''"),
    ],
)
def test_bad_judge_settings_name_the_key_and_value(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        validate(compose([override]))


def test_max_tokens_may_be_left_to_the_server(server, prompt_file, tmp_path) -> None:
    cfg = _judge_cfg(server, prompts=prompt_file, max_tokens="null", temperature=0.5)
    judge = build_judge(cfg, tmp_path)
    judge.judge_all([JudgeRequest(CASES[0][1], "A")], progress=False)
    [body] = _received(server)
    assert "max_tokens" not in body and body["temperature"] == 0.5


def test_config_and_layout_agree_on_the_variants() -> None:
    assert CONFIG_BELLE_TRANSLATIONS == BELLE_TRANSLATIONS
    assert BELLE_LAYOUT == BelleLayout("paper")
    with pytest.raises(ValueError, match="translation"):
        BelleLayout("today")  # type: ignore[arg-type]
