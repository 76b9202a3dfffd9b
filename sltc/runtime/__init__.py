"""The torch-free runtime: numpy, scipy and onnxruntime (OpenVINO where installed) on top
of the format (``sltc.format``).

Runs a ticket (``.slt``), a CSR export (``.csr.safetensors``) or an ONNX export
through one of the engines in ``ENGINES`` (``dense``, ``csr``, ``ort``, ``openvino``).
"""
