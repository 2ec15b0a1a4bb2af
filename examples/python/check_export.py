"""Reproduces gridfed's forecast of an exported model with numpy + safetensors only.

usage: python check_export.py EXPORT_DIR PROBE_JSON   (probe from `--example export_probe`)

`forecast` is the README's snippet ("Using an export outside gridfed"); keep the two equal.
Exits non-zero when it differs from gridfed's forecast by more than 1e-4 (normalized units).
"""
import json, math, sys
import numpy as np
from safetensors.numpy import load_file

export_dir, probe_path = sys.argv[1], sys.argv[2]

spec = json.load(open(f"{export_dir}/manifest.json"))["spec"]
w = load_file(f"{export_dir}/weights.safetensors")
arch = spec["architecture"]
q, h = len(arch["quantiles"]), arch["horizon"]

def forecast(x):                       # x: float32 [n_features], the normalized input row
    z = x
    for i in range(len(arch["hidden"])):
        z = z @ w[f"hidden.{i}.weight"] + w[f"hidden.{i}.bias"]
        z = np.maximum(z, 0) if arch["activation"] == "relu" else z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    raw = (z @ w["head.weight"] + w["head.bias"]).reshape(q, h)
    anchor = int(np.argmin([abs(l - 0.5) for l in arch["quantiles"]]))
    out = raw.copy()
    for k in range(anchor - 1, -1, -1):             # levels below the median: minus softplus gaps
        out[k] = out[k + 1] - np.logaddexp(0, raw[k])
    for k in range(anchor + 1, q):                  # levels above: plus softplus gaps
        out[k] = out[k - 1] + np.logaddexp(0, raw[k])
    return out                                      # [quantile, step], normalized

probe = json.load(open(probe_path))
got = forecast(np.asarray(probe["x"], dtype=np.float32))
want = np.asarray(probe["forecast"], dtype=np.float32)
diff = float(np.max(np.abs(got - want)))
print(f"{q} quantiles x {h} steps from {len(probe['x'])} features: max |numpy - gridfed| = {diff:.2e}")
sys.exit(0 if got.shape == want.shape and diff < 1e-4 else 1)
