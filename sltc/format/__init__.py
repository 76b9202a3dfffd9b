"""What a file is: the ticket (seed + mask + skeleton), the CSR file and the graph
language every engine and exporter reads (the op table, the checker, the executor).

Besides the standard library it imports numpy, scipy (one op's ``erf``), onnx and
safetensors (the CSR file) only: no torch, no pydantic, no yaml. Training, the runtime
engines and the exporters stand on it; it imports nothing of sltc outside it.
docs/format.md is its specification.
"""
