"""The configured judge, built from `JudgeConfig` (the `judge` config section).

    from lorabench.judging import build_judge

    judge = build_judge(cfg.judge, cfg.cache_dir)   # before generating anything
    pairwise = build_pairwise_judge(cfg.judge, cfg.pairwise, cfg.cache_dir)   # head to head

The section's values were checked when the config was validated (`JudgeConfig`, in
`lorabench.config.schema`: the settings' ranges, and that `judge.prompts` is `belle`, `project`
or a file). What only the run can tell is resolved here, so that it too stops an evaluation
before any answer is generated: `judge.prompts=belle` downloads BELLE's `eval_prompt.json` into
`<cache_dir>/eval/` (checksum-checked, kept for later runs), and an unreachable download with no
cached copy is a `DataError` that says how to point at a local copy
(`judge.prompts=/path/to/eval_prompt.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lorabench.errors import DataError
from lorabench.judging import prompts as _prompts
from lorabench.judging.base import Judge
from lorabench.judging.openai_judge import OpenAIJudge
from lorabench.judging.pairwise import OpenAIPairwiseJudge, PairwiseJudge, ReferencePairwiseJudge
from lorabench.judging.pairwise_prompts import PairwiseLanguage
from lorabench.judging.prompts import (
    PROJECT_PROMPTS,
    BelleLayout,
    BelleTranslation,
    JudgePrompts,
    download_belle_prompts,
    load_belle_prompts,
)
from lorabench.judging.reference_judge import ReferenceJudge

if TYPE_CHECKING:
    from lorabench.config.schema import JudgeConfig, PairwiseConfig

BELLE_PROMPTS_CACHE = Path("eval") / "eval_prompt.json"
"""Where `judge.prompts=belle` keeps BELLE's file, under `cache_dir`."""


def build_judge(judge_cfg: JudgeConfig, cache_dir: str | Path) -> Judge:
    """The configured judge (a validated section): an OpenAI-compatible LLM (`openai`) or the
    offline `reference`."""
    if judge_cfg.name == "reference":
        return ReferenceJudge(text_metric=judge_cfg.model)
    prompts = resolve_prompts(judge_cfg, cache_dir)
    return OpenAIJudge(judge_cfg.model, prompts=prompts, **_endpoint(judge_cfg, cache_dir))


def build_pairwise_judge(
    judge_cfg: JudgeConfig, pairwise_cfg: PairwiseConfig, cache_dir: str | Path
) -> PairwiseJudge:
    """The configured judge in its pairwise mode (validated sections): the same OpenAI-compatible
    endpoint, model and reply cache with the pairwise prompt in `pairwise.language`, or, for the
    offline `reference` judge, the token-F1 comparison with `pairwise.margin`."""
    if judge_cfg.name == "reference":
        return ReferencePairwiseJudge(margin=pairwise_cfg.margin)
    language = cast(PairwiseLanguage, pairwise_cfg.language)
    return OpenAIPairwiseJudge(
        judge_cfg.model, language=language, **_endpoint(judge_cfg, cache_dir)
    )


def _endpoint(judge_cfg: JudgeConfig, cache_dir: str | Path) -> dict[str, Any]:
    """An LLM judge's call settings, its reply cache (under `cache_dir`) created."""
    cache_path = Path(cache_dir) / judge_cfg.cache_path
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "base_url": judge_cfg.base_url,
        "api_key_env": judge_cfg.api_key_env,
        "concurrency": judge_cfg.concurrency,
        "max_retries": judge_cfg.max_retries,
        "timeout": judge_cfg.timeout,
        "temperature": judge_cfg.temperature,
        "max_tokens": judge_cfg.max_tokens,
        "cache_path": cache_path,
        "requests_per_minute": judge_cfg.requests_per_minute,
        "tokens_per_minute": judge_cfg.tokens_per_minute,
    }


def resolve_prompts(judge_cfg: JudgeConfig, cache_dir: str | Path) -> JudgePrompts:
    """The judge prompts `judge.prompts` names: `project`, `belle` (downloaded into
    `cache_dir` unless already there) or a path to a file in BELLE's format.

    BELLE's prompts (downloaded or local) use `BelleLayout(judge.belle_translation)`.
    """
    if judge_cfg.prompts == "project":
        return PROJECT_PROMPTS
    layout = BelleLayout(cast(BelleTranslation, judge_cfg.belle_translation))
    if judge_cfg.prompts == "belle":
        dest = Path(cache_dir) / BELLE_PROMPTS_CACHE
        try:
            path = download_belle_prompts(dest)
        except DataError as err:
            raise DataError(
                f"judge.prompts=belle: BELLE's eval_prompt.json is not in the cache ({dest}) and "
                f"could not be fetched from {_prompts.BELLE_PROMPT_URL} ({err}). Download it "
                "by hand and set judge.prompts=/path/to/eval_prompt.json, or put it at "
                f"{dest}, or use judge.prompts=project."
            ) from err
        return load_belle_prompts(path, layout=layout)  # download() checked the checksum
    # Not project or belle: a file, as the schema checked.
    return load_belle_prompts(Path(judge_cfg.prompts).expanduser(), layout=layout)
