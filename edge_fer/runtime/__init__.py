"""The edge runtime: backends, face detection and tracking, clip buffers, streaming inference.

Contract: nothing under ``edge_fer.runtime`` imports torch. An edge device installs numpy,
OpenCV and one inference backend (OpenVINO, ONNX Runtime or TensorRT), nothing more.
"""
