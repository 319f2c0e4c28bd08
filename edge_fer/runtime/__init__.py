"""The edge runtime: backends, face detection and tracking, clip buffers, streaming inference.

Contract: nothing under ``edge_fer.runtime`` imports torch. An edge device installs numpy,
OpenCV and one inference backend (OpenVINO, ONNX Runtime or TensorRT), nothing more.

From Python (``edge-fer camera`` is ``run_camera`` with flags):

    from edge_fer.runtime import open_pipeline, open_source

    with open_pipeline("exports/stt_tiny") as pipeline:
        for frame in open_source("clip.mp4"):
            for event in pipeline.process(frame).events:
                print(event["track"], event["label"])

The names below load their modules on first use, so ``import edge_fer.runtime`` stays cheap
and a backend's library is imported only when a model is opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "CameraConfig": "camera",
    "open_model": "camera",
    "open_pipeline": "camera",
    "open_source": "camera",
    "run_camera": "camera",
    "ExpressionModel": "streaming",
    "Pipeline": "pipeline",
    "PipelineConfig": "pipeline",
    "open_backend": "backends",
    "open_face_detector": "detection",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from edge_fer.runtime.backends import open_backend
    from edge_fer.runtime.camera import CameraConfig, open_model, open_pipeline, open_source, run_camera
    from edge_fer.runtime.detection import open_face_detector
    from edge_fer.runtime.pipeline import Pipeline, PipelineConfig
    from edge_fer.runtime.streaming import ExpressionModel


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'edge_fer.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edge_fer.runtime.{_HOMES[name]}"), name)
