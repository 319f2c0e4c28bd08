"""Export trained models: ONNX (``python -m export.onnx``), OpenVINO IR, TensorRT engines.

Each tool's command line only parses flags into one function of its module, the Python API:
``export.onnx.export_checkpoint_onnx``, ``export.openvino.export_openvino``,
``export.trt.export_tensorrt``; their settings (``QuantizationSettings``, ``ExportRequestError``)
are in ``export.settings``. Workstation side: imports torch, onnx, openvino and (on the
target) tensorrt; ``export.trt`` from an ONNX needs no torch.
"""
