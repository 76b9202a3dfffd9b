"""A ticket for your own network, from Python: define it, hand sltc your DataLoaders, ship it.

    python examples/custom_model.py    # 10 s on two CPU cores busy with other jobs (load 2)

The network needs only ``nn.Linear`` / ``nn.Conv2d`` layers for sltc to gate; everything
else (the residual add, the biases, the pooling) is traced into the ticket's skeleton.
Data here is sltc's synthetic set, as uint8 images in torch ``TensorDataset``s.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sltc
from sltc.data import synthetic_split
from sltc.exporters import export
from sltc.runtime.engines import prepare
from sltc.runtime.loader import load


class SmallResNet(nn.Module):
    """Built as ``SmallResNet(input_shape, classes)``, so ``sltc eval`` can rebuild it."""

    def __init__(self, input_shape, classes, width=16):
        super().__init__()
        c, h, w = input_shape
        self.stem = nn.Conv2d(c, width, 3, padding=1)
        self.body = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width * (h // 2) * (w // 2), 128)
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.stem(x - 0.5))
        x = F.relu(x + self.body(x))  # a residual add
        x = F.relu(self.down(x)).flatten(1)
        return self.head(F.relu(self.fc(x)))


def loader(split, shuffle=False):
    data = torch.utils.data.TensorDataset(torch.from_numpy(split.images),
                                          torch.from_numpy(split.labels))
    return torch.utils.data.DataLoader(data, batch_size=64, shuffle=shuffle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/custom"))
    out = ap.parse_args().out
    train, test = synthetic_split(0, "train", 2048), synthetic_split(0, "test", 512)
    model = SmallResNet((1, 28, 28), 10)
    # 96 steps: lambda 3.0 brings the dense start down to 0.8 (its default 0.3 needs more)
    config = {"seed": 0, "gates": {"target_sparsity": 0.8, "lambda": 3.0},
              "train": {"epochs": 3, "lr": 0.05}}
    summary, ticket = sltc.find_ticket(model, loader(train, shuffle=True), loader(test),
                                       config, out=out, progress=False)
    print(f"ticket: {summary['ticket']} ({summary['ticket_bytes']} bytes), sparsity "
          f"{summary['sparsity']:.3f}, test accuracy {summary['test_accuracy']:.4f}")
    report = export(summary["ticket"], "onnx", out / "model.onnx")
    print(f"ONNX: {out / 'model.onnx'}, max |onnx - torch| {report['max_abs_diff']:.2g}")
    predict = prepare(load(out / "model.onnx"), "csr")  # torch-free
    hits = sum(int((predict(test.batch(i, i + 256).astype(np.float32) / 255).argmax(1)
                    == test.labels[i:i + 256]).sum()) for i in range(0, len(test), 256))
    print(f"csr engine on the ONNX file: test accuracy {hits / len(test):.4f}")


if __name__ == "__main__":
    main()
