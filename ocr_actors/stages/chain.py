"""Several model stages in one actor (``resources.models_in_one_actor``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ocr_actors.config import OCRConfig
from ocr_actors.stages.common import Batch

StageSpec = tuple[Callable[..., Callable[[Batch], Batch]], tuple[Any, ...]]
"""A stage class and the arguments its constructor takes after the :class:`OCRConfig`."""


class StageChain:
    """Runs ``stages`` one after another on each batch, in one process: detection, cropping,
    text-line orientation and recognition share the actor's GPU context and kernel set-ups,
    and the crops never move between Ray processes. Each stage still adds its own ``t_`` and
    ``c_`` timing columns and isolates its own failing pages."""

    def __init__(self, config: OCRConfig, stages: Sequence[StageSpec]) -> None:
        if not stages:
            raise ValueError("StageChain needs at least one stage")
        self.stages = [stage_class(config, *args) for stage_class, args in stages]

    def __call__(self, batch: Batch) -> Batch:
        for stage in self.stages:
            batch = stage(batch)
        return batch
