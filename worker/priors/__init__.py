"""Video diffusion priors: one small module per model family behind one interface.

``load_prior(spec, device, dtype)`` → ``VideoPrior``; ``lora`` injects and toggles LoRA adapters.
"""

from . import lora
from .base import PriorLoadError, VideoPrior
from .loading import load_prior
from .tiny import build_tiny_prior_folder

__all__ = ["load_prior", "VideoPrior", "PriorLoadError", "build_tiny_prior_folder", "lora"]
