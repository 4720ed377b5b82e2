"""examples/trainer-torch: model.py's CNN as a fedge external trainer.

The agent runs this once per task (docs/TRAINER.md). Configuration, from
the agent's trainer "env":

  MNIST_DIR      folder of the MNIST IDX files (gzipped or not)
  SHARD, SHARDS  this agent's shard: every SHARDS-th image from SHARD (default 0, 1)
  LIMIT          at most this many training images (default: the whole shard)
  EVAL_LIMIT     at most this many held-out (test set) images (default: the whole shard)
  TORCH_THREADS  torch.set_num_threads (default: PyTorch's choice)
  FEDGE_PYTHON   folder of fedge_trainer.py (default: ../../python)
"""
import os
import sys
import time

STARTED = time.monotonic()  # before the imports: torch takes a while

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("FEDGE_PYTHON", os.path.join(here, "..", "..", "python")))
sys.path.insert(0, here)
import fedge_trainer as ft  # noqa: E402

import torch  # noqa: E402

import model as mdl  # noqa: E402


def env_int(name, default):
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        ft.fail("%s=%r is not an integer" % (name, os.environ.get(name)))


def main():
    plan = ft.load_plan()
    if os.environ.get("TORCH_THREADS"):
        torch.set_num_threads(env_int("TORCH_THREADS", 1))
    mnist = os.environ.get("MNIST_DIR", "")
    if not os.path.isdir(mnist):
        ft.decline("MNIST_DIR=%r is not a folder" % mnist)
    shard, shards = env_int("SHARD", 0), env_int("SHARDS", 1)
    limit = env_int("LIMIT" if plan["split"] == "train" else "EVAL_LIMIT", 0)
    x, y = mdl.load_shard(mnist, plan["split"], shard, shards, limit)
    if len(y) == 0:
        ft.decline("shard %d of %d has no %s examples" % (shard, shards, plan["split"]))

    net = mdl.CNN()
    mdl.set_weights(net, ft.read_safetensors(plan["input_weights"]))
    t1 = time.monotonic()
    if plan["task"] == "evaluate":
        correct, total, loss = mdl.evaluate(net, x, y)
        ft.write_eval_result(plan, correct=correct, total=total, loss=loss)
        return
    torch.manual_seed(plan["seed"] % (1 << 63))
    loss, acc = mdl.train(net, x, y, epochs=max(1, plan.get("epochs") or 1),
                          batch_size=max(1, plan.get("batch_size") or 32), lr=plan["lr"],
                          momentum=plan.get("momentum", 0.0), weight_decay=plan.get("weight_decay", 0.0),
                          mu=plan.get("proximal_mu", 0.0), seed=plan["seed"] % (1 << 63))
    t2 = time.monotonic()
    ft.write_safetensors(plan["output_weights"], mdl.get_weights(net))
    # setup_s (imports, data, weights in) and train_s are reported as metrics
    # too: the benchmarks read them from result.json.
    ft.write_train_result(plan, examples=len(y), loss=loss, accuracy=acc, setup_s=t1 - STARTED, train_s=t2 - t1)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        ft.fail("%s: %s" % (type(e).__name__, e))
