"""User-facing errors: the CLI prints their message on one line and exits with their code
(2 for a mistake the user can fix)."""


class SltcError(Exception):
    """A mistake the user can fix; the message names the problem and the fix."""

    exit_code = 2


class ConfigError(SltcError):
    """A config file or override that does not validate."""


class DataError(SltcError):
    """A dataset that cannot be found or read."""


class TrainingError(SltcError):
    """A run that cannot go on (a non-finite loss, a checkpoint that does not match)."""


class TicketError(SltcError):
    """A ticket file that is malformed, corrupted or does not match its generator."""


class GraphError(SltcError):
    """A network graph (a ticket's skeleton, an ONNX file) that sltc does not run."""


class CheckFailed(SltcError):
    """A check that ran and failed (``sltc validate`` below its tolerance): exit 3."""

    exit_code = 3


class Interrupted(SltcError):
    """Ctrl-C: the message says what was kept and how to go on; exit 130."""

    exit_code = 130
