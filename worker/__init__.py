"""Animus3D worker: the pipeline (torch, diffusers, peft, gsplat) and the service that runs it."""

__version__ = "0.1.0"
