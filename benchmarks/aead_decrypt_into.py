"""Decrypt-into-buffer throughput vs plain `AESGCM.decrypt`, measured in one run (goal >= 0.9x).

    .venv/bin/python benchmarks/aead_decrypt_into.py [--json out.json]

Printed per size (1 MiB, 64 MiB): both throughputs and their ratio, medians of 50 / 7 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.crypto.aead import open_into
from cleanroom.memory.secure_buffer import SecureBuffer


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    rows = []
    for size in (1 << 20, 64 << 20):
        ciphertext = aead.encrypt(nonce, os.urandom(size), b"aad")
        repeats = 50 if size <= 1 << 20 else 7
        with SecureBuffer(size) as buffer:
            view = buffer.view()
            plain = best_of(lambda: aead.decrypt(nonce, ciphertext, b"aad"), repeats)
            into = best_of(lambda target=view: open_into(aead, nonce, ciphertext, b"aad", target), repeats)
            del view
        rows.append(
            {
                "size_bytes": size,
                "decrypt_s": plain,
                "decrypt_into_s": into,
                "decrypt_into_gbps": size / into / 1e9,
                "ratio_throughput": plain / into,
            }
        )
        print(
            f"{size >> 20:>3} MiB  decrypt {size / plain / 1e9:6.2f} GB/s   decrypt_into(SecureBuffer) "
            f"{size / into / 1e9:6.2f} GB/s   ratio {plain / into:.2f}x (goal >= 0.9x)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
