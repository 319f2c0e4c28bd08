"""Calibration sets and INT8 quantization helpers.

- ``calibration.sets``: build calibration sets from a dataset's training split or from
  videos (faces detected, aligned and windowed as the runtime does), stratified, cached,
  content-hashed. CLI: ``python -m calibration``.
- ``calibration.qat``: quantization-aware training with NNCF (TensorRT- or OpenVINO-grid).
Post-training quantization lives with the exporters (``export.openvino``, ``export.qdq``).
"""
