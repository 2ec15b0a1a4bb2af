"""TenSEAL CKKS reference for benches/he.rs (run outside CI).

The setting NVIDIA FLARE uses: poly modulus degree 8192, coefficient moduli [60, 40, 40, 60],
scale 2^40. Times, on the same vector of 1,000,000 values: encryption, the sum of 50 encrypted
vectors (one encryption added 49 times: an addition costs the same whatever the operand), one
decryption (TenSEAL has a single secret key: no threshold decryption, so this is a lower bound for
the pipeline), and the serialized bytes per value.

    python3 -m venv /tmp/tenseal && /tmp/tenseal/bin/pip install tenseal==0.3.18 numpy
    /tmp/tenseal/bin/python benches/tenseal_reference.py
"""

import json
import time

import numpy as np
import tenseal as ts

LENGTH = 1_000_000
SUMMANDS = 50
REPEATS = 3


def best_of(function, repeats=REPEATS):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    context.global_scale = 2**40
    values = np.random.default_rng(1).uniform(-1.0, 1.0, LENGTH)

    encrypt_s, encrypted = best_of(lambda: ts.ckks_vector(context, values))

    def add_all():
        total = encrypted.copy()
        for _ in range(SUMMANDS - 1):
            total += encrypted
        return total

    add_s, total = best_of(add_all)
    decrypt_s, decrypted = best_of(lambda: total.decrypt())
    error = float(np.max(np.abs(np.array(decrypted) - SUMMANDS * values)))
    report = {
        "length": LENGTH,
        "encrypt_s": encrypt_s,
        f"add_{SUMMANDS}_s": add_s,
        "decrypt_s": decrypt_s,
        "pipeline_s": encrypt_s + add_s + decrypt_s,
        "bytes_per_value": len(encrypted.serialize()) / LENGTH,
        "max_error": error,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
