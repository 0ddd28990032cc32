"""The executor backends by name (kept apart from the pydantic config so the CLI loads fast)."""

from __future__ import annotations

from typing import Literal

Backend = Literal["inline", "threads", "processes", "ray", "dask"]
BACKENDS: tuple[str, ...] = ("inline", "threads", "processes", "ray", "dask")
