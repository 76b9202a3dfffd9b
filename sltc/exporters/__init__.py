"""Exporters behind a registry: a new format is one new module that registers itself.

``export(ticket_path, fmt, output, **options)`` writes atomically and returns a report.
"""

from . import csr, onnx, ticket  # noqa: F401  (registration)
from ._registry import EXPORTERS, export, options_of

__all__ = ["EXPORTERS", "export", "options_of"]
