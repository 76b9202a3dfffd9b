"""The exporters' registry: a new format is one new module that registers itself here."""

from __future__ import annotations

from sltc.registry import Registry

EXPORTERS: Registry = Registry("export format")


def export(ticket_path, fmt: str, output, **options) -> dict:
    """Write ``ticket_path`` as ``fmt`` to ``output`` (atomically); returns a report."""
    from sltc.data import recorded_files
    from sltc.io import check_output
    from sltc.ticket import Ticket

    exporter = EXPORTERS.get(fmt)
    ticket = Ticket.load(ticket_path)
    check_output(output, [ticket_path, *recorded_files(ticket.meta, options.get("data_root"))])
    return exporter(ticket, ticket_path, output, **options)
