"""``--format ticket``: the ``.slt`` again (re-encoded, byte-identical for the same ticket)."""

from __future__ import annotations

from pathlib import Path

from ._registry import EXPORTERS


@EXPORTERS.register("ticket")
def export_ticket(ticket, source, output) -> dict:
    ticket.save(output)
    return {"format": "ticket", "output": str(output), "file_bytes": Path(output).stat().st_size}
