"""Assemble stage (CPU): per-page model outputs -> final rows of :data:`PAGE_SCHEMA`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np

from ocr_actors.runtime.ocr import PageFrame, PredictParams, assemble_page
from ocr_actors.stages.common import OK, Batch, require


def _null_if(value: Any, sentinel: Any) -> Any:
    return None if value == sentinel else value


def assemble_rows(
    batch: Batch, params: PredictParams, det_model: str, rec_model: str, job_id: str, processed_at: datetime
) -> list[dict[str, Any]]:
    """Reading order, score threshold, polygons mapped to the page as given; one dict per row."""
    require(batch, "assemble", "source_uri", "status", "quads", "det_scores", "rec_texts", "rec_scores")
    rows: list[dict[str, Any]] = []
    for i in range(len(batch["source_uri"])):
        status = str(batch["status"][i])
        page_index = int(batch["page_index"][i])
        row: dict[str, Any] = {
            "source_uri": str(batch["source_uri"][i]),
            "doc_id": str(batch["doc_id"][i]),
            "page_index": _null_if(page_index, -1),
            "page_count": _null_if(int(batch["page_count"][i]), -1),
            "status": status,
            "error_type": _null_if(str(batch["error_type"][i]), ""),
            "error_message": _null_if(str(batch["error_message"][i]), ""),
            "width": None,
            "height": None,
            "dpi": _null_if(float(batch["dpi"][i]), -1.0),
            "doc_angle": None,
            "text": None,
            "lines": None,
            "det_model": det_model,
            "rec_model": rec_model,
            "job_id": job_id,
            "processed_at": processed_at,
        }
        if status == OK:
            frame = PageFrame(
                angle=int(batch["doc_angle"][i]),
                unwarped=bool(batch["unwarped"][i]),
                upright_shape=(int(batch["upright_height"][i]), int(batch["upright_width"][i])),
                source_shape=(int(batch["height"][i]), int(batch["width"][i])),
            )
            quads = np.asarray(batch["quads"][i], dtype=np.float32).reshape(-1, 4, 2)
            texts = json.loads(batch["rec_texts"][i])
            scores = np.asarray(batch["rec_scores"][i], dtype=np.float32)
            angles = np.asarray(batch["line_angles"][i]).tolist() if "line_angles" in batch else None
            page = assemble_page(
                frame,
                quads,
                np.asarray(batch["det_scores"][i], dtype=np.float32),
                list(zip(texts, scores.tolist(), strict=True)),
                None if angles is None or all(a == -1 for a in angles) else angles,
                params,
            )
            boxes = page.rec_boxes
            height, width = frame.output_shape
            row.update(
                width=width,
                height=height,
                doc_angle=_null_if(frame.angle, -1),
                text=page.text,
                lines=[
                    {
                        "text": text,
                        "score": float(score),
                        "poly": np.round(poly, 1).tolist(),
                        "box": box.tolist(),
                        "angle": int(page.textline_angles[k]),
                    }
                    for text, score, poly, box, k in zip(
                        page.rec_texts, page.rec_scores, page.rec_polys, boxes, page.rec_indices, strict=True
                    )
                ],
            )
        rows.append(row)
    return rows
