"""Tokenizers for the prompt tests, and the exact-mask assertion they share.

The LLaMA-style SentencePiece tokenizer is trained locally (nothing is downloaded).

The model is trained with the settings of LLaMA's ``tokenizer.model`` (BPE, byte fallback,
digits split, unk/bos/eos = 0/1/2, no pad, identity normalisation, a dummy prefix, whitespace
kept as is) on the demo corpus, then loaded the way transformers loads a real LLaMA checkpoint:
``AutoTokenizer.from_pretrained`` on a folder holding ``tokenizer.model`` and a
``tokenizer_config.json`` naming ``LlamaTokenizer``.

In transformers 5 ``LlamaTokenizerFast`` is an alias of ``LlamaTokenizer``, a tokenizers-backed
class, and ``LlamaTokenizer(vocab_file=...)`` does not read the file: it builds a tokenizer
whose vocabulary is only ``<unk> <s> </s>`` and that encodes any text to ``[]``. Only
``from_pretrained`` converts a SentencePiece model.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorabench.demo_corpus import DOMAINS, generate_train_samples
from lorabench.prompts import IGNORE_INDEX, TokenizedExample, Turn, format_prompt
from lorabench.tiny_tokenizer import build_tiny_tokenizer

VOCAB_SIZE = 1500


def _training_texts() -> list[str]:
    # Template-formatted demo samples, so the template pieces are in the model's vocabulary.
    rows = [row for domain in DOMAINS for row in generate_train_samples(1000, domain=domain)]
    return [format_prompt(row["instruction"], row["input"]) + row["output"] for row in rows]


def write_llama_style_model(folder: Path) -> Path:
    """Train the SentencePiece model and write it as ``folder/tokenizer.model``."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_texts()),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16,
        character_coverage=0.99995,
        num_threads=1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.model"
    path.write_bytes(model.getvalue())
    # What a LLaMA checkpoint's tokenizer_config.json says (no pad token, BOS only).
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@functools.cache
def llama_style_folder(base: Path) -> Path:
    """The tokenizer folder under ``base``, trained on first use (well under a second)."""
    folder = base / "llama-style-sp"
    write_llama_style_model(folder)
    return folder


def load_llama_style_tokenizer(folder: Path, **kwargs: object) -> PreTrainedTokenizerBase:
    """Load the tokenizer as a LLaMA checkpoint's would be (``legacy=True`` etc. via kwargs)."""
    return AutoTokenizer.from_pretrained(folder, **kwargs)


@functools.cache
def cached_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The project's tiny tokenizer, built once per test process (it takes a few seconds)."""
    return build_tiny_tokenizer()


def assert_exact_mask(
    tokenizer: PreTrainedTokenizerBase, example: TokenizedExample, turns: Sequence[Turn]
) -> None:
    """Assert, position by position, that ``example`` is ``turns`` with the exact loss mask.

    The labels must split into alternating runs, masked then trained, one run per segment of
    the template (prompt, response + EOS, prompt, ...), and each run's ids must decode, in the
    context of the ids before it, to exactly that segment's text: so every prompt position is
    masked, every response position trained, and no token crosses a boundary. Decoding in context
    matters for LLaMA-style tokenizers, whose decoder drops one leading space of any decoded
    string (undoing the dummy prefix): alone, a response " x" would decode to "x".
    """
    ids, labels = example.input_ids, example.labels
    assert len(ids) == len(labels)
    runs: list[list[int]] = []  # [start, end, trained]
    for position, (token, label) in enumerate(zip(ids, labels, strict=True)):
        trained = int(label != IGNORE_INDEX)
        assert not trained or label == token, f"label differs from its token at {position}"
        if runs and runs[-1][2] == trained:
            runs[-1][1] = position + 1
        else:
            runs.append([position, position + 1, trained])
    eos = tokenizer.eos_token
    segments: list[tuple[str, int]] = []
    for human, assistant in turns:
        segments += [(format_prompt(human), 0), (assistant + eos, 1)]
    assert [run[2] for run in runs] == [trained for _, trained in segments]

    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    first_end = runs[0][1]
    assert tokenizer.decode(ids[:first_end], skip_special_tokens=True) == segments[0][0]
    for (start, end, trained), (text, _) in zip(runs[1:], segments[1:], strict=True):
        before = tokenizer.decode(ids[:start], skip_special_tokens=False)
        assert tokenizer.decode(ids[:end], skip_special_tokens=False) == before + text
        if trained:
            assert ids[end - 1] == tokenizer.eos_token_id
            assert tokenizer.eos_token_id not in ids[start : end - 1]
            response = text.removesuffix(eos)
            if not response.startswith(" "):
                assert tokenizer.decode(ids[start : end - 1]) == response
