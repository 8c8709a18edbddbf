"""Tokenizers built locally for the tests (nothing is downloaded), and the exact-mask assertion
the prompt tests share.

The project's tiny tokenizer (`tiny_tokenizer`, built once per test process); the LLaMA-style
SentencePiece tokenizer (`write_llama_style_model`, the `sp_tokenizer` fixture of
tests/conftest.py); and the byte-level BPEs of the LLaMA-3 and Qwen2 families
(`write_byte_level_family`).

(Not named `tokenizers.py`: run as scripts, the servers beside it have this folder first on
their module path, where such a file would hide the `tokenizers` library.)

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
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorabench.data.prompts import IGNORE_INDEX, TokenizedExample, Turn, format_prompt
from lorabench.demo.corpus import DOMAINS, generate_train_samples
from lorabench.demo.tokenizer import build_tiny_tokenizer

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


def load_llama_style_tokenizer(folder: Path, **kwargs: object) -> PreTrainedTokenizerBase:
    """Load the tokenizer as a LLaMA checkpoint's would be (``legacy=True`` etc. via kwargs)."""
    return AutoTokenizer.from_pretrained(folder, **kwargs)


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The project's tiny tokenizer, built once per test process (it takes a few seconds) and
    shared by its tests: read it, never change it."""
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

    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer.encode("x")[:1] == [bos]:
        assert ids[0] == bos and bos not in ids[1:]
    else:  # a tokenizer without BOS (Qwen2): the prompt starts with its own text
        assert ids[: runs[0][1]] == tokenizer.encode(segments[0][0], add_special_tokens=False)
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


# ---- byte-level BPE families (LLaMA-3, Qwen2) ------------------------------------------------
# The pre-tokenisation patterns of the published tokenizer.json files: LLaMA-3 groups digits in
# threes, Qwen2 splits them one by one and normalises to NFC.
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BYTE_LEVEL_FAMILIES: dict[str, dict[str, object]] = {
    # Special tokens after the BPE vocabulary, as in the real files (<|begin_of_text|> is
    # 128000); BOS is prepended by the post-processor. The base model ends texts with
    # <|end_of_text|>, the Instruct model's turns with <|eot_id|>.
    "llama3": {
        "pattern": _LLAMA3_PATTERN,
        "nfc": False,
        "special": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        "config": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
            "clean_up_tokenization_spaces": True,
            "model_max_length": 131072,
        },
    },
    # No BOS at all; <|endoftext|> is EOS and pad of the base model, <|im_end|> ends the chat
    # format's turns (the Instruct model's EOS).
    "qwen2": {
        "pattern": _QWEN2_PATTERN,
        "nfc": True,
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "config": {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "errors": "replace",
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 131072,
        },
    },
}
"""The conventions of the two byte-level families the base-model presets use."""


def write_byte_level_family(folder: Path, family: str, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train a byte-level BPE with `family`'s pre-tokenisation and special-token conventions on
    the demo corpus and save it as that family's checkpoint does (tokenizer.json and
    tokenizer_config.json), for ``AutoTokenizer.from_pretrained``."""
    spec = BYTE_LEVEL_FAMILIES[family]
    backend = Tokenizer(models.BPE())
    if spec["nfc"]:
        backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(spec["pattern"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_texts(), trainer=trainer)
    backend.add_special_tokens(list(spec["special"]))
    config = dict(spec["config"])
    bos = config["bos_token"]
    byte_level = processors.ByteLevel(trim_offsets=False)
    if bos is None:
        backend.post_processor = byte_level
    else:
        template = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos}:1 $B:1",
            special_tokens=[(bos, backend.token_to_id(bos))],
        )
        backend.post_processor = processors.Sequence([byte_level, template])
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder
