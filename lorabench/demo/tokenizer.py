"""The tiny model's tokenizer: a byte-level BPE trained on the demo world's pretraining text.

Stands in for the LLaMA tokenizer on machines without a model hub. It keeps the properties the
data and training code rely on: ``<s>``/``</s>``/``<unk>`` special tokens plus a distinct
``<pad>``, BOS prepended by ``add_special_tokens=True`` and nothing else, digits split one per
token, right padding, and an exact decode(encode(text)) round trip for any UTF-8 text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lorabench.demo import world as demo_world
from lorabench.demo.world import tokenizer_training_texts

SPECIAL_TOKENS: dict[str, str] = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
}
"""Special tokens by their transformers attribute name; trained first, so ids 0-3 in this order
(unk 0, bos 1, eos 2 as in LLaMA)."""

_MODEL_MAX_LENGTH = 4096

# The code that decides a built tokenizer (its training text and its rules): part of the cache
# directory's name, so a tokenizer built by other code is never loaded in its place.
_CONTENT_FILES = (Path(__file__), Path(demo_world.__file__))


def _train_backend(vocab_size: int, seed: int) -> Tokenizer:
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    # No normalizer: any normalisation (NFKC, stripping) would break the exact round trip.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # One token per digit, as LLaMA does, so the tiny model sees arithmetic digit-wise.
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        # All 256 byte symbols, so characters absent from the corpus still encode (never unk).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_training_texts(seed), trainer=trainer)
    bos_id = tokenizer.token_to_id(bos)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )
    return tokenizer


def build_tiny_tokenizer(vocab_size: int = 2048, *, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens on the demo world's text drawn with
    ``seed`` (`demo_world.tokenizer_training_texts`).

    The result prepends ``<s>`` when encoding with ``add_special_tokens=True`` (never appends
    ``</s>``: the data code adds EOS to responses itself) and pads on the right with ``<pad>``.
    """
    min_size = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be at least {min_size} (bytes + specials)")
    return PreTrainedTokenizerFast(
        tokenizer_object=_train_backend(vocab_size, seed),
        **SPECIAL_TOKENS,
        # Explicit, so the add_bos_token/add_eos_token attributes match the post-processor.
        add_bos_token=True,
        add_eos_token=False,
        padding_side="right",
        model_max_length=_MODEL_MAX_LENGTH,
    )


def _publish(staging: Path, final: Path) -> None:
    try:
        os.replace(staging, final)
    except OSError:
        # Another process renamed its copy into place first; theirs is built identically.
        if not final.is_dir():
            raise


def cache_name(vocab_size: int, seed: int) -> str:
    """The tokenizer's directory name under a cache: its size, seed and a digest of its code."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in _CONTENT_FILES)).hexdigest()
    return f"tiny-bpe-{vocab_size}-s{seed}-{digest[:12]}"


def tiny_tokenizer_dir(
    cache_dir: str | os.PathLike[str], vocab_size: int = 2048, *, seed: int = 0
) -> Path:
    """Where `load_or_build_tiny_tokenizer` keeps the tokenizer of this size and seed."""
    return Path(cache_dir) / cache_name(vocab_size, seed)


def load_or_build_tiny_tokenizer(
    cache_dir: str | os.PathLike[str], vocab_size: int = 2048, *, seed: int = 0
) -> PreTrainedTokenizerFast:
    """Load the tiny tokenizer from ``cache_dir``, building and saving it there on first use.

    Saved under ``cache_dir/`` :func:`cache_name`. The directory appears atomically
    (written aside, then renamed), so concurrent processes such as torchrun ranks either see a
    complete tokenizer or build their own copy and keep whichever landed first.
    """
    cache_dir = Path(cache_dir)
    final = tiny_tokenizer_dir(cache_dir, vocab_size, seed=seed)
    if not final.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_dir))
        try:
            build_tiny_tokenizer(vocab_size, seed=seed).save_pretrained(staging)
            _publish(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    # Always load from disk, so the first call returns exactly what later calls will.
    tokenizer = AutoTokenizer.from_pretrained(final)
    # transformers 5 drops add_bos/eos_token when saving next to a tokenizer.json (whose
    # post-processor already prepends <s>); restore the flags so they describe the behaviour.
    tokenizer.add_bos_token = True
    tokenizer.add_eos_token = False
    return tokenizer
