"""The model and data of examples/trainer-torch: a CNN with batch norm for
MNIST, the shard this agent reads, and the training and evaluation loops.

Nothing here knows about fedge: it is the code a PyTorch user already has.
train.py wraps it in the trainer contract (docs/TRAINER.md).
"""
import gzip
import os
import struct

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class CNN(nn.Module):
    """The FedAvg paper's MNIST CNN (5x5x32, pool, 5x5x64, pool, fc512,
    fc10; 'same' padding) with batch norm after each convolution:
    1,663,562 trainable parameters plus 192 running statistics."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(7 * 7 * 64, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def federated_names(model):
    """The state_dict entries fedge carries: every float tensor, trainable
    weights and batch norm's running_mean / running_var alike. The int64
    num_batches_tracked counters stay local (the contract is F32 only; they
    only matter for momentum=None batch norm, which this model does not use)."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point()]


def get_weights(model):
    """{name: float32 numpy array} of the federated tensors."""
    sd = model.state_dict()
    return {k: sd[k].detach().cpu().float().numpy() for k in federated_names(model)}


def set_weights(model, weights):
    """Load {name: array} into model; the names and shapes must be exactly
    the federated tensors'."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if v.is_floating_point()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if want != got:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        shapes = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise ValueError("weights do not fit the model: missing %s, extra %s, other shape %s" % (missing, extra, shapes))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}, strict=False)


def _idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    (magic,) = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _file(mnist_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(mnist_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("no %s[.gz] in MNIST_DIR=%s" % (stem, mnist_dir))


def load_shard(mnist_dir, split, shard, shards, limit=0):
    """Shard `shard` of `shards` of MNIST's training set (split "train") or
    test set ("held_out"): every shards-th image from index shard, at most
    limit of them (0: all). The union of shards 0..k-1 of k, limit L each,
    is the first k·L images: the centralised baseline trains on exactly that."""
    prefix = "train" if split == "train" else "t10k"
    images = _idx(_file(mnist_dir, prefix + "-images-idx3-ubyte"))
    labels = _idx(_file(mnist_dir, prefix + "-labels-idx1-ubyte"))
    idx = np.arange(shard, len(labels), shards)
    if limit:
        idx = idx[:limit]
    x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - 0.1307) / 0.3081
    y = torch.from_numpy(labels[idx].astype(np.int64))
    return x, y


def train(model, x, y, epochs, batch_size, lr, momentum=0.0, weight_decay=0.0, mu=0.0, seed=0):
    """Plain SGD for epochs epochs (FedProx term mu/2·||w − w_start||² when
    mu > 0); returns the last epoch's mean loss and accuracy."""
    g = torch.Generator().manual_seed(seed)
    start = [p.detach().clone() for p in model.parameters()] if mu > 0 else None
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    loss_sum, correct = 0.0, 0
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            b = order[i:i + batch_size]
            out = model(x[b])
            loss = F.cross_entropy(out, y[b])
            if start is not None:
                loss = loss + mu / 2 * sum(((p - s) ** 2).sum() for p, s in zip(model.parameters(), start))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += F.cross_entropy(out.detach(), y[b], reduction="sum").item()
            correct += (out.argmax(1) == y[b]).sum().item()
    return loss_sum / len(y), correct / len(y)


@torch.no_grad()
def evaluate(model, x, y, batch_size=500):
    """(correct, total, mean loss) of model on x, y in eval mode (batch norm
    uses its running statistics)."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        loss_sum += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    return correct, len(y), loss_sum / max(1, len(y))
