"""Array checks shared by the splat container, the animation and the protocol decoder."""

from __future__ import annotations

import numpy as np


def all_finite(array: np.ndarray) -> bool:
    """True if no value is NaN or ±inf, at close to memory speed.

    A sum in the array's own dtype is non-finite whenever some value is (NaN and inf propagate
    through addition), so a finite sum proves every value finite. A non-finite sum may also come
    from finite values overflowing, so only then does the exact element-wise check decide.
    """
    if not array.size:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):
            return True
    return bool(np.isfinite(array).all())
