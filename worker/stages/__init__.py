"""The three Animus3D stages: static prior (LoRA), Motion Score Distillation, refinement."""
