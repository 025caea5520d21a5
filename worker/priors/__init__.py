"""Video diffusion priors: one small module per model family behind one interface."""
