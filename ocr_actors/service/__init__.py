"""HTTP service: ``POST /ocr`` in the reference pipeline's format, on the engine's runners."""
