"""Thin Ray Data adapters, one module per stage. Each checks its input columns, calls the
runtime, and returns columns; none of them imports ``ray``.

Batches are ``dict[str, np.ndarray]`` (Ray Data's numpy format). Rows whose ``status`` is
``"error"`` pass through every stage untouched (with empty placeholders), so nothing is lost.
"""
