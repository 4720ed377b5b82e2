"""fedge trainer contract helper (contract version 1, docs/TRAINER.md).

Standard library plus numpy. A trainer is any program that the agent runs
once per task with FEDGE_PLAN pointing at plan.json:

    import fedge_trainer as ft
    plan = ft.load_plan()
    weights = ft.read_safetensors(plan["input_weights"])   # {name: float32 array}
    if plan["task"] == "train":
        ... train for plan["epochs"] epochs with plan["lr"], plan["batch_size"] ...
        ft.write_safetensors(plan["output_weights"], weights)
        ft.write_train_result(plan, examples=n, loss=l, accuracy=a)
    else:
        ft.write_eval_result(plan, correct=c, total=t, loss=l)

Exit 0 on success, 75 to decline (data unavailable), anything else on error;
print the reason as the last line of stderr: the agent reports it.
"""

import json
import os
import struct
import sys

import numpy as np

CONTRACT_VERSION = 1
EXIT_DECLINE = 75


def load_plan(path=None):
    """Read plan.json (default: $FEDGE_PLAN) and check its contract version."""
    path = path or os.environ["FEDGE_PLAN"]
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    if plan.get("contract_version") != CONTRACT_VERSION:
        fail("plan.json has contract version %r; this helper speaks %d"
             % (plan.get("contract_version"), CONTRACT_VERSION))
    return plan


def read_safetensors(path):
    """Read an F32 safetensors file into an ordered dict {name: np.float32 array}."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if info["dtype"] != "F32":
            raise ValueError("tensor %r has dtype %s; fedge uses F32" % (name, info["dtype"]))
        start, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=start)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata=None):
    """Write {name: array} as F32 safetensors (arrays are cast to float32).

    The file is written to a temporary name and renamed, so a crash never
    leaves half a file behind.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for a in arrays:
            f.write(a.tobytes())
    os.replace(tmp, path)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def write_train_result(plan, examples, **metrics):
    """Write result.json of a train task: the example count and optional
    metrics (loss: mean training loss, accuracy in [0, 1])."""
    _write_json(plan["result"], {"examples": int(examples),
                                 "metrics": {k: float(v) for k, v in metrics.items()}})


def write_eval_result(plan, correct, total, loss):
    """Write result.json of an evaluate task: correct, total and the mean loss."""
    _write_json(plan["result"], {"correct": int(correct), "total": int(total), "loss": float(loss)})


def fail(reason, code=1):
    """Exit with reason as the last stderr line (the agent reports it)."""
    print(reason, file=sys.stderr)
    sys.exit(code)


def decline(reason):
    """Decline this task (exit 75): e.g. the local data is not available now."""
    fail(reason, EXIT_DECLINE)
