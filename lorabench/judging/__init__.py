"""Judges: score model answers on the eval set, per item, with explicit failures.

    from lorabench.judging import JudgeRequest, OpenAIJudge, ReferenceJudge, build_judge

    judge = build_judge(cfg.judge, cfg.cache_dir)  # from the `judge` config section, or:
    judge = OpenAIJudge("gpt-3.5-turbo", cache_path=".cache/judge/openai.sqlite")
    judge.preflight()                       # before generating: key, server, model name
    n_calls, tokens = judge.estimate(reqs)  # a dry run: nothing is sent
    judgements = judge.judge_all(reqs)      # in order; failures have score None
    metrics = judge.stats.as_metrics()      # eval/judge_calls, eval/judge_cache_hits, ...
    judge.served_models                     # ('gpt-3.5-turbo-0125',): who really answered

`base` holds the interface and records, `parsing` reads scores out of replies, `prompts` builds
judge messages (the project's instructions and layout, or BELLE's exact messages), `cache` is
the sqlite reply cache, `factory` builds the configured judge; `pairwise` judges two runs'
answers head to head (`build_pairwise_judge`: the configured judge in its pairwise mode).
"""

from lorabench.judging.base import (
    STATUSES,
    CostEstimate,
    Judge,
    JudgeError,
    Judgement,
    JudgeRequest,
    JudgeStats,
    Status,
)
from lorabench.judging.cache import JudgeCache, cache_key
from lorabench.judging.factory import build_judge, build_pairwise_judge, resolve_prompts
from lorabench.judging.openai_judge import (
    DEFAULT_CACHE_PATH,
    UNKNOWN_SERVED_MODEL,
    OpenAIJudge,
    estimate_tokens,
)
from lorabench.judging.pairwise import (
    OpenAIPairwiseJudge,
    PairwiseJudge,
    ReferencePairwiseJudge,
)
from lorabench.judging.parsing import ParsedScore, parse_score, parse_score_detail
from lorabench.judging.prompts import (
    BELLE_LAYOUT,
    BELLE_NO_GOLD_CLASSES,
    BELLE_PROMPT_COMMIT,
    BELLE_PROMPT_SHA256,
    BELLE_PROMPT_URL,
    BELLE_TRANSLATIONS,
    PROJECT_LAYOUT,
    PROJECT_PROMPTS,
    BelleLayout,
    BelleTranslation,
    JudgePrompts,
    Layout,
    MessageLayout,
    download_belle_prompts,
    load_belle_prompts,
)
from lorabench.judging.reference_judge import ReferenceJudge

__all__ = [
    "BELLE_LAYOUT",
    "BELLE_NO_GOLD_CLASSES",
    "BELLE_PROMPT_COMMIT",
    "BELLE_PROMPT_SHA256",
    "BELLE_PROMPT_URL",
    "BELLE_TRANSLATIONS",
    "DEFAULT_CACHE_PATH",
    "PROJECT_LAYOUT",
    "PROJECT_PROMPTS",
    "STATUSES",
    "UNKNOWN_SERVED_MODEL",
    "BelleLayout",
    "BelleTranslation",
    "CostEstimate",
    "Judge",
    "JudgeCache",
    "JudgeError",
    "JudgePrompts",
    "JudgeRequest",
    "JudgeStats",
    "Judgement",
    "Layout",
    "MessageLayout",
    "OpenAIJudge",
    "OpenAIPairwiseJudge",
    "PairwiseJudge",
    "ParsedScore",
    "ReferenceJudge",
    "ReferencePairwiseJudge",
    "Status",
    "build_judge",
    "build_pairwise_judge",
    "cache_key",
    "download_belle_prompts",
    "estimate_tokens",
    "load_belle_prompts",
    "parse_score",
    "parse_score_detail",
    "resolve_prompts",
]
