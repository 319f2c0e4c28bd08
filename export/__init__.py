"""Export trained models: ONNX (``python -m export.onnx``), OpenVINO IR, TensorRT engines.

Workstation side: imports torch, onnx, openvino and (on the target) tensorrt.
"""
