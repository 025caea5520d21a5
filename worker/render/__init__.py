"""Differentiable Gaussian-splat rendering: gsplat on CUDA, our own pure-PyTorch splatter on the CPU."""
