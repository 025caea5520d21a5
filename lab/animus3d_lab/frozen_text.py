"""The frozen sentence encoder a MiniLM-conditioned prior is trained on, and its transport copy.

Training computes each caption's token states exactly as the worker does at run time
(``animus3d_worker.priors.minilm``: the packaged all-MiniLM-L6-v2, padded to the prior's
``text_length`` tokens, padding masked out and zeroed), once per distinct caption.

A GPU machine that cannot install the 83 MB package gets a *transport copy* instead
(``write_transport_copy``): the same weights in float16, with the word-embedding table cut down to the
rows of the tokens the run's captions use, and the states of a few reference captions computed here
from the verified package. ``FrozenText`` rebuilds the model from it, refuses captions with a token
outside the kept rows, and ``check_reference`` says how far its states are from the package's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch

from animus3d_worker.priors import minilm

TRANSPORT_MANIFEST = "transport.json"
TRANSPORT_WEIGHTS = "weights.safetensors"
REFERENCE_STATES = "reference_states.safetensors"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
REFERENCE_CAPTIONS = ("a dog jumping up and down", "the robot waves its right arm", "")


class FrozenTextError(RuntimeError):
    """A transport copy that is missing, damaged or does not cover a caption."""


class FrozenText:
    """Token states ``[B, length, 384]`` of captions under frozen MiniLM (cached per caption)."""

    def __init__(self, length: int, transport: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        from transformers import AutoTokenizer

        self.length = int(length)
        self.device = torch.device(device)
        self.transport = Path(transport) if transport else None
        self.kept: set[int] | None = None
        if self.transport is None:
            encoder, self.tokenizer = minilm.load_packaged(self.length)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.transport), local_files_only=True,
                                                           model_max_length=self.length)
            encoder = minilm.MaskedTextEncoder(self._rebuild_model(), self.tokenizer.pad_token_id)
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self._cache: dict[str, torch.Tensor] = {}

    def _rebuild_model(self):
        from safetensors.torch import load_file
        from transformers import BertConfig, BertModel

        manifest_path = self.transport / TRANSPORT_MANIFEST
        if not manifest_path.is_file():
            raise FrozenTextError(f"{self.transport} is not a transport copy of the text encoder ({TRANSPORT_MANIFEST} missing)")
        manifest = json.loads(manifest_path.read_text())
        tensors = load_file(str(self.transport / TRANSPORT_WEIGHTS))
        kept = tensors.pop("kept_token_ids").long()
        rows = tensors.pop(WORD_EMBEDDINGS + ".rows").float()
        config = BertConfig.from_pretrained(str(self.transport))
        table = torch.zeros(config.vocab_size, rows.shape[1])
        table[kept] = rows
        state = {k: v.float() for k, v in tensors.items()}
        state[WORD_EMBEDDINGS] = table
        model = BertModel(config, add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise FrozenTextError(f"transport copy {self.transport} does not fit the model: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")
        self.kept = set(int(i) for i in kept)
        self.manifest = manifest
        return model

    def token_ids(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(list(captions), padding="max_length", max_length=self.length, truncation=True,
                              return_tensors="pt").input_ids

    @torch.no_grad()
    def states(self, captions: list[str]) -> torch.Tensor:
        """``[len(captions), length, 384]`` float32 on the device."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        for start in range(0, len(missing), 256):
            chunk = missing[start:start + 256]
            ids = self.token_ids(chunk)
            if self.kept is not None:
                unknown = sorted(set(ids.flatten().tolist()) - self.kept)
                if unknown:
                    words = self.tokenizer.convert_ids_to_tokens(unknown[:5])
                    raise FrozenTextError(f"the transport copy {self.transport} lacks tokens {words} of these captions: "
                                          f"make it again from this run's captions")
            hidden = self.encoder(ids.to(self.device))[0].float()
            for caption, row in zip(chunk, hidden):
                self._cache[caption] = row
        return torch.stack([self._cache[c] for c in captions])

    def check_reference(self) -> float:
        """Largest difference between this copy's states and the package's, on the reference captions
        (0 for the package itself)."""
        if self.transport is None:
            return 0.0
        from safetensors.torch import load_file

        reference = load_file(str(self.transport / REFERENCE_STATES))["states"].float().to(self.device)
        mine = FrozenText.states(self, list(self.manifest["reference_captions"]))
        return float((mine - reference).abs().max())


def write_transport_copy(folder: str | Path, captions: Iterable[str], length: int) -> dict:
    """Writes the transport copy of the verified packaged encoder for ``captions`` into ``folder``."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = minilm.verified_folder()
    packaged = FrozenText(length)
    captions = sorted(set(captions) | set(REFERENCE_CAPTIONS))
    ids = packaged.token_ids(captions)
    kept = torch.tensor(sorted(set(ids.flatten().tolist())), dtype=torch.int64)
    model = AutoModel.from_pretrained(str(source), local_files_only=True, use_safetensors=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
               if not k.endswith("position_ids") and not k.startswith("pooler.")}
    tensors[WORD_EMBEDDINGS + ".rows"] = tensors.pop(WORD_EMBEDDINGS)[kept].contiguous()
    tensors["kept_token_ids"] = kept
    save_file(tensors, str(folder / TRANSPORT_WEIGHTS))
    model.config.save_pretrained(str(folder))
    packaged.tokenizer.save_pretrained(str(folder))
    save_file({"states": packaged.states(list(REFERENCE_CAPTIONS)).to(torch.float32).contiguous()},
              str(folder / REFERENCE_STATES))
    manifest = {"requirement": minilm.REQUIREMENT, "weights_sha256": minilm.WEIGHTS_SHA256, "length": int(length),
                "kept_tokens": int(kept.numel()), "captions": len(captions),
                "reference_captions": list(REFERENCE_CAPTIONS)}
    (folder / TRANSPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
