"""Two real tokenizers, built offline, for the percent judge scale's one-token check: the
project's stub tokenizer (Qwen2's pre-tokenizer: one digit per token, so "85" is two tokens)
and a WordLevel tokenizer with one token per number 0-100."""

from __future__ import annotations

from pathlib import Path


def digit_splitting(directory: Path) -> Path:
    """``directory`` holding the stub's ``tokenizer.json`` (interpflow.stub.train_tokenizer),
    trained on text full of numbers: it still writes 10..100 as several tokens."""
    from interpflow.stub import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text(
        "\n".join(f"a score of {n} out of 100, say 85 or {n * 7}" for n in range(300))
    )
    train_tokenizer([corpus], 400).save(str(directory / "tokenizer.json"))
    return directory


def whole_numbers(directory: Path) -> Path:
    """``directory`` holding a WordLevel ``tokenizer.json`` with one token per number 0-100."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {str(n): n for n in range(101)} | {"[UNK]": 101}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(directory / "tokenizer.json"))
    return directory
