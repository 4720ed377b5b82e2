"""Multinomial logistic regression in numpy, as a fedge external trainer.

The model's tensors follow PyTorch's nn.Linear: linear.weight [classes,
features] and linear.bias [classes]. The data is a CSV file (header row;
the last column is the integer class) named by $DATA_CSV; the last
$HELD_OUT fraction (default 0.2) is the held-out split.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.environ.get("FEDGE_PYTHON", os.path.join(os.path.dirname(__file__), "..", "..", "python")))
import fedge_trainer as ft  # noqa: E402


def load(split):
    path = os.environ.get("DATA_CSV")
    if not path or not os.path.exists(path):
        ft.decline("DATA_CSV=%r is not a readable file" % path)
    d = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
    x, y = d[:, :-1], d[:, -1].astype(np.int64)
    cut = int(len(y) * (1 - float(os.environ.get("HELD_OUT", "0.2"))))
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


def forward(w, b, x):
    z = x @ w.T + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def main():
    plan = ft.load_plan()
    t = ft.read_safetensors(plan["input_weights"])
    w, b = t["linear.weight"], t["linear.bias"]
    x, y = load(plan["split"])
    if len(y) == 0:
        ft.decline("no examples in the %s split" % plan["split"])
    if plan["task"] == "evaluate":
        p = forward(w, b, x)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
        ft.write_eval_result(plan, correct=(p.argmax(1) == y).sum(), total=len(y), loss=loss)
        return
    w0, b0 = w.copy(), b.copy()
    rng = np.random.default_rng(plan["seed"])
    lr, mu, bs = plan["lr"], plan["proximal_mu"], max(1, plan.get("batch_size") or 32)
    for _ in range(max(1, plan.get("epochs") or 1)):
        order = rng.permutation(len(y))
        for i in range(0, len(y), bs):
            idx = order[i:i + bs]
            p = forward(w, b, x[idx])
            p[np.arange(len(idx)), y[idx]] -= 1
            g = p / len(idx)
            w -= lr * (g.T @ x[idx] + mu * (w - w0))
            b -= lr * (g.sum(0) + mu * (b - b0))
    p = forward(w, b, x)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    ft.write_safetensors(plan["output_weights"], {"linear.weight": w, "linear.bias": b})
    ft.write_train_result(plan, examples=len(y), loss=loss, accuracy=(p.argmax(1) == y).mean())


if __name__ == "__main__":
    main()
