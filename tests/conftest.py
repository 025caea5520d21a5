import os
import tempfile

import pytest

# Keep caches (tiny prior, LoRA) out of the user's home and shared across this test session.
os.environ.setdefault("ANIMUS3D_CACHE", os.path.join(tempfile.gettempdir(), "animus3d-test-cache"))


@pytest.fixture(scope="session")
def tiny_prior():
    from animus3d_worker.priors import load_prior

    return load_prior("tiny", device="cpu")
