"""User-facing errors: the CLI prints their message on one line and exits 2."""


class SltcError(Exception):
    """A mistake the user can fix; the message names the problem and the fix."""


class ConfigError(SltcError):
    """A config file or override that does not validate."""


class DataError(SltcError):
    """A dataset that cannot be found or read."""


class TrainingError(SltcError):
    """A run that cannot go on (a non-finite loss, a checkpoint that does not match)."""


class TicketError(SltcError):
    """A ticket file that is malformed, corrupted or does not match its generator."""
