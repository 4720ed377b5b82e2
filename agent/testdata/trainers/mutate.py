# A test trainer (standard library only): reads the input weights, adds 0.5
# to every value and writes them back, then misbehaves as MODE says.
import json, os, struct, sys

mode = sys.argv[1]
plan = json.load(open(os.environ["FEDGE_PLAN"]))
assert plan["contract_version"] == 1 and os.environ["FEDGE_TASK"] == plan["task"]
assert "SECRET_FROM_AGENT_ENV" not in os.environ, "environment is not clean"
with open(plan["input_weights"], "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    hdr = json.loads(f.read(n))
    data = f.read()
hdr.pop("__metadata__", None)
names = sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0])
vals = list(struct.unpack("<%df" % (len(data) // 4), data))
if plan["task"] == "evaluate":
    json.dump({"correct": 7, "total": 10, "loss": 0.25}, open(plan["result"], "w"))
    sys.exit(0)
vals = [v + 0.5 for v in vals]
dtype = "F32"
if mode == "rename":
    hdr["renamed"] = hdr.pop(names[0])
elif mode == "reshape":
    hdr[names[0]]["shape"] = list(reversed(hdr[names[0]]["shape"]))
elif mode == "f16":
    for k in hdr:
        hdr[k]["dtype"] = "F16"
elif mode == "nan":
    vals[-1] = float("nan")
elif mode == "inf":
    vals[0] = float("inf")
body = json.dumps(hdr).encode()
with open(plan["output_weights"], "wb") as f:
    f.write(struct.pack("<Q", len(body)) + body + struct.pack("<%df" % len(vals), *vals))
    if mode == "oversize":
        f.write(b"\0" * (8 << 20))
if mode == "noresult":
    sys.exit(0)
res = {"examples": 0 if mode == "noexamples" else 42, "metrics": {"loss": 0.5, "accuracy": 0.75}}
json.dump(res, open(plan["result"], "w"))
