"""Triton Python-backend model that runs one edge-fer artifact (OpenVINO IR or ONNX).

``python -m export.triton --flavour python`` copies this file as ``<model>/1/model.py`` beside
the artifact, for Triton servers without the OpenVINO or ONNX Runtime backends (e.g. the
``tritonserver`` that ships in the ``nvidia-pytriton`` wheel, which has the Python backend
only). It needs numpy and the artifact's runtime (openvino or onnxruntime) in the Python
environment the server runs its stub with. Standalone on purpose: a serving machine does not
install edge-fer.

Dynamic batching hands ``execute`` several requests at once; they run as one batch.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        artifact = os.path.join(folder, parameters["artifact"])
        threads = int(parameters.get("threads", "0"))
        if artifact.endswith(".xml"):
            import openvino as ov

            options = {"INFERENCE_PRECISION_HINT": parameters.get("inference_precision", "f32")}
            if threads:
                options["INFERENCE_NUM_THREADS"] = threads
            compiled = ov.Core().compile_model(artifact, "CPU", options)
            request = compiled.create_infer_request()
            self.run = lambda batch: request.infer({0: batch})[0].copy()
        else:
            import onnxruntime as ort

            session_options = ort.SessionOptions()
            if threads:
                session_options.intra_op_num_threads = threads
            session = ort.InferenceSession(artifact, session_options, providers=["CPUExecutionProvider"])
            self.run = lambda batch: session.run([self.output_name], {self.input_name: batch})[0]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self.run(np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32))
        responses, start = [], 0
        for array in arrays:
            part = np.ascontiguousarray(outputs[start : start + len(array)], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, part)]))
            start += len(array)
        return responses
