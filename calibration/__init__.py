"""Calibration sets and INT8 quantization (NNCF post-training, ONNX Runtime Q/DQ, QAT preparation)."""
