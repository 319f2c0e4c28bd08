"""Calibration sets and INT8 quantization helpers.

- ``calibration.sets``: build calibration sets from a dataset's training split or from
  videos (faces detected, aligned and windowed as the runtime does), stratified, cached,
  content-hashed. CLI: ``python -m calibration``.
Post-training quantization lives with the exporters (``export.openvino``, ``export.qdq``);
quantization-aware training with the models (``edge_fer.models.qat``), since a QAT
checkpoint must load wherever the package is installed.
"""
