"""The generator against a scalar reference, published test vectors and itself elsewhere."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from sltc.format.seeding import generate_normal, generate_weight, layer_key, philox4x32, random_words

MASK = 0xFFFFFFFF


def philox_reference(ctr, key, rounds=10):
    """Philox4x32 written from the Random123 paper with Python ints."""
    c, (k0, k1) = list(ctr), key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK]
    return c


# Known-answer tests of Random123 (kat_vectors, philox4x32_10).
KAT = [
    ([0, 0, 0, 0], (0, 0), [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([MASK] * 4, (MASK, MASK), [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], (0xA4093822, 0x299F31D0),
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    out = philox4x32(np.array(ctr, dtype=np.uint64).reshape(4, 1), key)[:, 0]
    assert [int(v) for v in out] == expected
    assert philox_reference(ctr, key) == expected


def test_stream_matches_scalar_reference():
    seed, name = 7, "features.conv1"
    words = random_words(seed, name, 4 * 37 + 3)
    key = layer_key(seed, name)
    expected = [w for i in range(38) for w in philox_reference([i, 0, 0, 0], key)][: len(words)]
    assert words.tolist() == expected


def test_key_is_a_stable_hash():
    digest = hashlib.sha256((0).to_bytes(8, "little") + b"fc1").digest()
    assert layer_key(0, "fc1") == (int.from_bytes(digest[:4], "little"),
                                   int.from_bytes(digest[4:8], "little"))
    assert layer_key(0, "fc1") != layer_key(0, "fc2") != layer_key(1, "fc1")


def test_doc_test_vectors(doc_vectors):
    for (seed, name, init, shape, fan_in), first in doc_vectors.items():
        if init.startswith("normal"):  # "normal, std S": a tensor drawn by name
            w = generate_normal(seed, name, shape, float(init.split("std")[1]))
        else:
            w = generate_weight(seed, name, shape, init, fan_in)
        assert w.ravel()[: len(first)].tolist() == first


@pytest.fixture
def doc_vectors():
    """Parse the test-vector table of docs/format.md (seed, name, init, shape, fan_in, values)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    rows = {}
    for line in text.splitlines():
        if line.startswith("| vector |"):
            cells = [c.strip() for c in line.strip("|").split("|")][1:]
            if cells[0] == "seed":
                continue
            seed, name, init, shape, fan_in, values = cells
            key = (int(seed), name.strip("`"), init.replace("`", ""),
                   tuple(int(v) for v in shape.split("x")), None if fan_in == "-" else int(fan_in))
            rows[key] = [float(v) for v in values.split()]
    assert len(rows) >= 4, "docs/format.md lost its test vectors"
    return rows


@pytest.mark.parametrize("init", ["signed_constant", "uniform", "kaiming_normal"])
def test_inits_have_their_scale(init):
    w = generate_weight(1, "fc", (300, 784), init, 784).astype(np.float64)
    assert w.dtype == np.float64 and abs(w.mean()) < 0.01 * w.std()
    assert w.std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    if init == "signed_constant":
        assert np.unique(np.abs(w)).size == 1


SNIPPET = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from sltc.config import from_dict
from sltc.layers import gate
from sltc.models import create_model
cfg = from_dict({"model": {"arch": "conv2"}, "seed": 11})
m = gate(create_model(cfg.model, (1, 28, 28), 10, 0.0, 1.0), cfg)
h = hashlib.sha256()
for name, buf in m.named_buffers():
    h.update(name.encode()); h.update(buf.numpy().tobytes())
print(h.hexdigest())
"""


def test_bits_identical_across_processes_and_threads():
    digests = {subprocess.run([sys.executable, "-c", SNIPPET, str(t)], capture_output=True,
                              text=True, check=True).stdout.strip() for t in (1, 2)}
    assert len(digests) == 1


def test_torch_layers_hold_the_numpy_weights():
    from sltc.config import from_dict
    from sltc.layers import gate, gated_layers
    from sltc.models import create_model

    cfg = from_dict({"model": {"arch": "conv2", "init": "uniform"}, "seed": 5})
    model = gate(create_model(cfg.model, (1, 28, 28), 10, 0.0, 1.0), cfg)
    for layer in gated_layers(model):
        expected = generate_weight(5, layer.name, layer.weight_shape, "uniform", layer.fan_in)
        assert np.array_equal(layer.weight.numpy(), expected)
