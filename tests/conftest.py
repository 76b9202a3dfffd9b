import pytest

from tests.helpers import sltc


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """One small discover run on the synthetic dataset, shared by tests that read it."""
    out = tmp_path_factory.mktemp("run") / "syn"
    sltc("discover", "examples/synthetic.yaml", "--out", out, "--json", check=True)
    return out
