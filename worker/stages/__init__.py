"""The pipeline's stages, one file each: the static prior (LoRA), the guide draw and fit (with the turn
search), Motion Score Distillation, refinement; ``core`` holds what they share and ``plan`` which run."""
