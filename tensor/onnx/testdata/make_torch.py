"""Generates the PyTorch-exported ONNX test files of tensor/onnx.

Run with Debian's python3-torch (1.13) and python3-onnx from this folder:

    /usr/bin/python3 make_torch.py

It writes torch_mlp.onnx and torch_cnn.onnx (torch.onnx.export, opset 13)
and, for each, <name>.json: four seeded random inputs and the
probabilities PyTorch computes for them, which the Go test compares with
the imported model's predictions.
"""
import json

import torch
from torch import nn


class Normalize(nn.Module):
    """MNIST's normalisation, exported as a Sub and a Mul."""

    def forward(self, x):
        return (x - 0.1307) * (1 / 0.3081)


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1)
    )


def cnn():
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=1),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 10), nn.LogSoftmax(dim=1),
    )


def main():
    torch.manual_seed(0)
    for name, model, soft in (("torch_mlp", mlp(), False), ("torch_cnn", cnn(), True)):
        model.eval()
        x = torch.rand(4, 1, 28, 28)
        torch.onnx.export(
            model, x, name + ".onnx", opset_version=13,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        )
        with torch.no_grad():
            y = model(x)
            p = y.exp() if soft else y
        with open(name + ".json", "w") as f:
            json.dump({"shape": [1, 28, 28], "input": x.flatten().tolist(),
                       "probabilities": p.flatten().tolist()}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
