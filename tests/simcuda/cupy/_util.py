"""cupy._util: the warning class CuPy emits for cross-device access."""


class PerformanceWarning(RuntimeWarning):
    """Warning that indicates possible performance issues (cupy/_util.pyx:185)."""
