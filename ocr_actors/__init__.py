"""ocr-batch: the PP-OCR General OCR pipeline as a library, a CLI and a Ray batch job."""

from ocr_actors.api import OCRPipeline, create_pipeline
from ocr_actors.config import OCRConfig, load_config
from ocr_actors.io.decode import InputError
from ocr_actors.result import OCRResult

__all__ = ["InputError", "OCRConfig", "OCRPipeline", "OCRResult", "create_pipeline", "load_config"]
__version__ = "0.1.0"
