"""Write model.py's CNN's initial weights as safetensors for
`fedge models import` (F32 tensors; num_batches_tracked left out).

    python3 init.py -o init.safetensors [-seed 0]
"""
import argparse
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("FEDGE_PYTHON", os.path.join(here, "..", "..", "python")))
sys.path.insert(0, here)
import fedge_trainer as ft  # noqa: E402

import torch  # noqa: E402

import model as mdl  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("-o", default="init.safetensors", help="output file")
    p.add_argument("-seed", type=int, default=0, help="torch.manual_seed of the initialisation")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    w = mdl.get_weights(mdl.CNN())
    ft.write_safetensors(a.o, w, metadata={"model": "mnist-cnn-bn", "seed": a.seed})
    print("%s: %d tensors, %d values" % (a.o, len(w), sum(v.size for v in w.values())))


if __name__ == "__main__":
    main()
