"""What a file is: the ticket (seed + mask + skeleton), the CSR file and the graph
language every engine and exporter reads (the op table, the checker, the executor).

This package depends on numpy and onnx only: no torch, no pydantic, no yaml. Training,
the runtime engines and the exporters stand on it; it imports nothing of sltc outside it.
docs/format.md is its specification.
"""
