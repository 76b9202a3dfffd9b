"""The torch-free runtime: numpy, scipy and onnxruntime only.

Runs a ticket (``.slt``), a CSR export (``.csr.safetensors``) or an ONNX export
through one of the engines in ``ENGINES`` (``dense``, ``csr``, ``ort``).
"""
