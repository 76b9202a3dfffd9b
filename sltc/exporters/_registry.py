"""The exporters' registry: a new format is one new module that registers itself here."""

from __future__ import annotations

import inspect

from sltc.format.errors import SltcError
from sltc.registry import Registry

EXPORTERS: Registry = Registry("export format")
FLAGS = {"weights": "--weights", "compact_units": "--compact", "values": "--values",
         "check": "--no-check", "data_root": "--data",
         "quantize": "--quantize"}  # sltc export's name for each option


def options_of(fmt: str) -> list[str]:
    """The options the exporter of ``fmt`` takes: its keyword-only parameters."""
    params = inspect.signature(EXPORTERS.get(fmt)).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY]


def check_options(fmt: str, options) -> None:
    """Refuse an option the exporter of ``fmt`` would ignore, naming the formats it suits."""
    for option in options:
        if option not in options_of(fmt):
            flag = FLAGS.get(option, option)
            suits = [f for f in EXPORTERS.names() if option in options_of(f)]
            fix = f"drop it, or export --format {' or '.join(suits)}" if suits else "drop it"
            raise SltcError(f"{flag} does not apply to --format {fmt}; {fix}")


def export(ticket_path, fmt: str, output, **options) -> dict:
    """Write ``ticket_path`` as ``fmt`` to ``output`` (atomically); returns a report.
    ``options`` are the exporter's keyword arguments; one it does not take is refused."""
    from sltc.data import dataset_files
    from sltc.format.outputs import check_output
    from sltc.format.ticket import Ticket

    exporter = EXPORTERS.get(fmt)
    check_options(fmt, options)
    ticket = Ticket.load(ticket_path)
    check_output(output, [ticket_path, *dataset_files(ticket.record().data,
                                                        options.get("data_root"))])
    return exporter(ticket, ticket_path, output, **options)
