"""Sizes of one ticket's exports side by side.

    python benchmarks/export_sizes.py runs/lenet300/ticket.slt --out benchmarks/out/export_sizes.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.exporters import export  # noqa: E402
from sltc.inspection import inspect_ticket  # noqa: E402

VARIANTS = [
    ("onnx, dense weights", "onnx", "m.onnx", {"weights": "dense", "check": False}),
    ("onnx, sparse weights", "onnx", "s.onnx", {"weights": "sparse", "check": False}),
    ("csr, values implied by the seed", "csr", "c.csr.safetensors", {"values": "implied"}),
    ("csr, values stored", "csr", "v.csr.safetensors", {"values": "stored"}),
    ("ticket (.slt)", "ticket", "t.slt", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ticket")
    ap.add_argument("--out", default="benchmarks/out/export_sizes.json")
    args = ap.parse_args()
    total = inspect_ticket(args.ticket)["total"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, fmt, name, opts in VARIANTS:
            r = export(args.ticket, fmt, Path(tmp) / name, **opts)
            rows.append({"export": label, "file_bytes": r["file_bytes"],
                         "dense_fp32_over_file": total["dense_fp32_bytes"] / r["file_bytes"]})
    rows.append({"export": "of which the skeleton (ticket)", "file_bytes": total["skeleton_bytes"],
                 "dense_fp32_over_file": None})
    rows.append({"export": "entropy floor of the masks", "file_bytes": round(total["entropy_bits"] / 8),
                 "dense_fp32_over_file": total["dense_fp32_bytes"] / (total["entropy_bits"] / 8)})
    report(rows, args.out, f"export sizes for {args.ticket} (sparsity {total['sparsity']:.4f}, "
           f"dense fp32 {total['dense_fp32_bytes']} B)", ["export", "file_bytes",
                                                         "dense_fp32_over_file"])


if __name__ == "__main__":
    main()
