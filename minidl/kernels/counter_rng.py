"""Counter-based random numbers: the same on every device, kernel set and resume.

Dropout draws its masks here, so they depend only on (seed, counter, index).
"""

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_uniform(shape, seed, counter, xp=np, dtype=np.float32, offset=0):
    """Uniform numbers in [0, 1) that depend only on (seed, counter, index).

    A SplitMix64 hash of each element's index, keyed by the seed and a call
    counter. The same arguments give the same numbers on NumPy and CuPy, and
    the whole random state is two integers, so dropout masks are reproducible
    across devices and across a checkpoint-and-resume. ``offset``: the flat
    index of the first element, so that a slice of a larger array draws that
    slice's numbers.
    """
    size = int(np.prod(shape, dtype=np.int64))
    key = (np.uint64(seed & 0xFFFFFFFF) << np.uint64(32)) ^ np.uint64(counter & 0xFFFFFFFF)
    z = xp.arange(int(offset), int(offset) + size, dtype=xp.uint64)
    z += np.uint64((int(key) * int(_GOLDEN)) & 0xFFFFFFFFFFFFFFFF)
    z *= _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    # keep as many top bits as the dtype represents exactly (float16: 11,
    # float32: 24, float64: 53), so the result is < 1 after the cast
    bits = np.finfo(dtype).nmant + 1
    u = (z >> np.uint64(64 - bits)).astype(dtype)
    u *= np.dtype(dtype).type(2.0**-bits)
    return u.reshape(shape)
