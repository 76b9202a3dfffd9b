"""User-facing errors: the CLI prints their message on one line and exits with their code
(2 for a mistake the user can fix)."""


class SltcError(Exception):
    """A mistake the user can fix; the message names the problem and the fix."""

    exit_code = 2


class ConfigError(SltcError):
    """A config file or override that does not validate."""


class DataError(SltcError):
    """A dataset that cannot be found or read."""


class NetworkError(ConfigError):
    """A user's own network that sltc cannot train: importing its module, calling its
    factory or running its forward raised (the message names the module, the exception and
    where), or it has no layer sltc gates, or one sltc cannot gate (nn.LSTM, ...)."""


class BatchError(DataError, ValueError):
    """The first batch and the network do not fit, found by one check before the first
    step: a loader that yields no batch or something other than ``(x, y)`` tensors, labels
    that are not class indices below the network's outputs, inputs the network's forward
    (or backward) fails on, or a forward that returns anything but ``(N, classes)`` logits.
    ``sltc.find_ticket`` raises it; it is a ``ValueError`` too."""


class TrainingError(SltcError):
    """A run that cannot go on (a non-finite loss, a checkpoint that does not match)."""


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite: the run stops at that step (the CLI adds what was
    kept of it)."""


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
