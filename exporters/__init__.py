"""Exporters behind a registry: a new format is one new module that registers itself.

``export(ticket_path, fmt, output, **options)`` writes atomically and returns a report.
"""

from __future__ import annotations

from sltc.registry import Registry

EXPORTERS: Registry = Registry("export format")


def export(ticket_path, fmt: str, output, **options) -> dict:
    from sltc.ticket import Ticket

    exporter = EXPORTERS.get(fmt)
    return exporter(Ticket.load(ticket_path), ticket_path, output, **options)


from . import csr, onnx, ticket  # noqa: E402,F401  (registration)
