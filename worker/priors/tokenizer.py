"""A small CLIP-style byte-level BPE tokenizer built locally (no hub access).

The tiny prior needs a real ``CLIPTokenizer`` so that it loads through the same code as ModelScope's.
Its files are generated here: the byte-level base alphabet (every byte, with and without CLIP's
``</w>`` end-of-word marker) plus BPE merges learnt from a short built-in English text, so that common
prompt words become single tokens.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# Words that prompts for object animation use; repeated words weigh more when learning merges.
CORPUS = """
a an the of and with in on at to from is are its it this that
a dog running a cat walking a horse galloping a bird flapping its wings a person dancing
a man waving his hand a woman jumping a robot walking forward a dragon flying a fish swimming
a character turning its head a monster roaring a toy spinning a flag waving in the wind
a tree swaying in the wind a car driving a rabbit hopping a frog jumping a snake slithering
standing still not moving static still motion moving walking running jumping dancing flying
swimming waving turning nodding shaking spinning rotating bouncing stretching raising lowering
arms legs head tail wings body hand hands feet eyes mouth left right up down forward backward
slowly quickly high quality video realistic cartoon animation 3d render object character
"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
    symbols = [byte_map[b] for b in word.encode("utf-8")]
    symbols[-1] = symbols[-1] + END_OF_WORD
    return tuple(symbols)


def learn_merges(text: str, num_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: repeatedly merges the most frequent adjacent pair (ties broken by the pair itself)."""
    byte_map = bytes_to_unicode()
    words = Counter(_word_symbols(w, byte_map) for w in re.findall(r"[a-z0-9]+", text.lower()))
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: Counter = Counter()
        for symbols, count in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def tokenizer_files(num_merges: int = 400) -> tuple[dict[str, int], list[str]]:
    """(vocab, merges lines) in CLIP's layout: bytes, bytes + ``</w>``, merges, then the two specials."""
    base = list(bytes_to_unicode().values())
    vocab_tokens = base + [c + END_OF_WORD for c in base]
    merges = learn_merges(CORPUS, num_merges)
    vocab_tokens += [a + b for a, b in merges]
    vocab_tokens += [START_TOKEN, END_TOKEN]
    vocab: dict[str, int] = {}
    for token in vocab_tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, [f"{a} {b}" for a, b in merges]


def write_tokenizer_source(folder: str | Path, num_merges: int = 400) -> Path:
    """Writes ``vocab.json`` and ``merges.txt`` into ``folder`` (what ``CLIPTokenizer`` reads)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tokenizer_files(num_merges)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def build_clip_tokenizer(folder: str | Path, max_length: int = 77, num_merges: int = 400):
    """A ``transformers.CLIPTokenizer`` built from generated files in ``folder``."""
    from transformers import CLIPTokenizer

    write_tokenizer_source(folder, num_merges)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length)
