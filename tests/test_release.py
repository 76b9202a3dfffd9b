"""Every export of a stored ticket is byte for byte what the previous release wrote
(tests/data/release-exports.json): moving code around must not move a bit of a file."""

import hashlib
import json

import pytest

from sltc.exporters import export
from tests.helpers import ROOT

DATA = ROOT / "tests/data"
RELEASE = json.loads((DATA / "release-exports.json").read_text())
OPTIONS = {".onnx": ("onnx", {"check": False}),
           ".sparse.onnx": ("onnx", {"check": False, "weights": "sparse"}),
           ".compact.onnx": ("onnx", {"check": False, "compact_units": True}),
           ".csr.safetensors": ("csr", {}),
           ".stored.csr.safetensors": ("csr", {"values": "stored"}),
           ".export.slt": ("ticket", {})}


def _split(name: str) -> tuple[str, str]:
    """``mixed-v1.1.sparse.onnx`` -> (``mixed-v1.1``, ``.sparse.onnx``)."""
    suffix = max((s for s in OPTIONS if name.endswith(s)), key=len)
    return name[:-len(suffix)], suffix


def _cases() -> list:
    return [pytest.param(*_split(name), digest, id=name)
            for name, digest in sorted(RELEASE["sha256"].items())]


def test_the_release_covers_every_kind_of_export():
    names = [_split(name) for name in RELEASE["sha256"]]
    assert {suffix for _, suffix in names} == set(OPTIONS)
    assert {stem for stem, _ in names} == {"mixed-v1.1", "conv2bn-v1.0", "lenet300-v1.0"}


@pytest.mark.parametrize("stem, suffix, digest", _cases())
def test_exports_are_the_previous_releases_bytes(tmp_path, stem, suffix, digest):
    fmt, options = OPTIONS[suffix]
    out = tmp_path / f"{stem}{suffix}"
    export(DATA / f"{stem}.slt", fmt, out, **options)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
