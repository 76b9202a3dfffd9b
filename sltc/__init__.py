"""sltc: find strong lottery tickets and ship them as seed + mask.

From Python, for any network of ``nn.Linear`` / ``nn.Conv2d`` layers::

    import sltc
    summary, ticket = sltc.find_ticket(model, train_loader, test_loader, out="runs/mine")

This module imports nothing heavy: the torch-free runtime (``sltc.runtime``) imports it.
"""


from .format.errors import BatchError, NetworkError, SltcError


def find_ticket(model, train, test, config=None, **options):
    """Gate ``model``, train its gates, freeze and save a ticket; see ``sltc.api``. Raises
    ``BatchError`` (a ``ValueError``) when the first batch and the network do not fit,
    ``NetworkError`` for a network sltc cannot gate; both are ``SltcError``."""
    from .api import find_ticket as run

    return run(model, train, test, config, **options)


__all__ = ["BatchError", "NetworkError", "SltcError", "find_ticket"]
