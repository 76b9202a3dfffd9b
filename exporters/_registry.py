"""The exporters' registry: a new format is one new module that registers itself here."""

from __future__ import annotations

from sltc.registry import Registry

EXPORTERS: Registry = Registry("export format")


def export(ticket_path, fmt: str, output, **options) -> dict:
    """Write ``ticket_path`` as ``fmt`` to ``output`` (atomically); returns a report."""
    from sltc.ticket import Ticket

    exporter = EXPORTERS.get(fmt)
    return exporter(Ticket.load(ticket_path), ticket_path, output, **options)
