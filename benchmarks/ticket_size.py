"""Ticket size against the entropy floor, and load time, for an 11M-weight network.

    python benchmarks/ticket_size.py --out benchmarks/out/ticket_size.json

Random masks of each density over 784-2048-2048-2048-512 (11.0M weights, signed
constant init). ``load_s`` is ``Ticket.load`` on the file: CRC checks, mask
decoding, regenerating every weight from the seed and verifying its SHA-256.
"""

from __future__ import annotations

import argparse
import lzma
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.config import from_dict  # noqa: E402
from sltc.format.legacy import skeleton_from_ops
from sltc.format.maskcode import entropy_bits, pack
from sltc.format.records import LayerSpec
from sltc.format.ticket import Ticket

SHAPES = [(2048, 784), (2048, 2048), (2048, 2048), (512, 2048)]


def make(density: float, seed: int = 0) -> Ticket:
    rng = np.random.default_rng(seed)
    layers = {f"fc{i + 1}": LayerSpec(f"fc{i + 1}", s, s[1], "signed_constant", math.sqrt(2),
                                      "weight", f"fc{i + 1}.weight")
              for i, s in enumerate(SHAPES)}
    masks = {name: rng.random(spec.shape) < density for name, spec in layers.items()}
    ops = [{"op": "flatten"}]
    for name in layers:
        ops += [{"op": "linear", "name": name}, {"op": "relu"}]
    graph = skeleton_from_ops(ops[:-1], {n: list(s.shape) for n, s in layers.items()},
                              [1, 28, 28], 512)
    ticket = Ticket(seed, layers, masks, {}, skeleton=graph)
    ticket.meta = {"config": from_dict({"seed": seed}).to_dict(), "input_shape": [1, 28, 28],
                   "classes": 512, "preprocessing": {"mean": 0.5, "std": 0.25},
                   "method": "crbg", "sparsity": ticket.sparsity(), "test_accuracy": None}
    return ticket


def measure(density: float, tmp: Path) -> dict:
    ticket = make(density)
    path = tmp / f"d{density}.slt"
    ticket.save(path)
    loads = []
    for _ in range(3):
        tic = time.perf_counter()
        Ticket.load(path)
        loads.append(time.perf_counter() - tic)
    n = sum(m.size for m in ticket.masks.values())
    floor = sum(entropy_bits(m.size, int(m.sum())) for m in ticket.masks.values()) / 8
    lz = sum(len(lzma.compress(pack(m).tobytes(), preset=9 | lzma.PRESET_EXTREME))
             for m in ticket.masks.values())
    size = path.stat().st_size
    return {"density": density, "weights": n, "file_bytes": size, "floor_bytes": round(floor),
            "file_over_floor": size / floor, "bits_per_weight": 8 * size / n,
            "entropy_bits_per_weight": 8 * floor / n, "lzma_bitmap_over_floor": lz / floor,
            "meets_goal": size <= 1.02 * floor + 2048, "load_s": min(loads),
            "dense_over_file": 4 * n / size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/ticket_size.json")
    ap.add_argument("--densities", default="0.02,0.05,0.1,0.2,0.3,0.4,0.5")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(float(d), Path(tmp)) for d in args.densities.split(",")]
    report(rows, args.out, "ticket size vs entropy floor (11.0M weights)",
           ["density", "bits_per_weight", "entropy_bits_per_weight", "file_over_floor",
            "lzma_bitmap_over_floor", "meets_goal", "dense_over_file", "load_s"])


if __name__ == "__main__":
    main()
