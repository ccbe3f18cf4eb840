"""Regenerate tests/vectors/sealed-v1.json (run by hand; the committed file is the reference).

HPKE encapsulation is randomized, so the vector fixes the recipient key and records one sealed request;
the payload ciphertext and the response are deterministic functions of the recorded CEK and are checked
byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.crypto.sealed import parse_request, seal_request, seal_response

PRIVATE_SCALAR = int("5f" * 48, 16) % (2**383)


def main() -> None:
    private_key = ec.derive_private_key(PRIVATE_SCALAR, ec.SECP384R1())
    cases = []
    for name, payload, model, path in [
        ("echo-short", b"hello, cleanroom", "echo", ""),
        ("empty", b"", "echo", ""),
        ("path-call", b'{"q": 1}', "", "/v1/app/predict"),
    ]:
        cek = bytes(range(32))
        request_id = bytes.fromhex("00112233445566778899aabbccddeeff")
        sealed = seal_request(
            private_key.public_key(),
            "hk_vector01",
            payload,
            tenant_id="t_vector",
            model=model,
            path=path,
            request_id=request_id,
            ts=1_800_000_000,
            content_key=cek,
        )
        parsed = parse_request(sealed.body)
        response_plaintext = payload[::-1]
        response = seal_response(cek, sealed.metadata, sealed.metadata.encode(), response_plaintext)
        cases.append(
            {
                "name": name,
                "key_id": "hk_vector01",
                "tenant_id": "t_vector",
                "model": model,
                "path": path,
                "ts": 1_800_000_000,
                "request_id": request_id.hex(),
                "content_key": cek.hex(),
                "payload": payload.hex(),
                "metadata": sealed.metadata.encode().decode(),
                "sealed_request": sealed.body.hex(),
                "header_length": len(parsed.header),
                "payload_ciphertext": bytes(parsed.payload_ciphertext).hex(),
                "response_plaintext": response_plaintext.hex(),
                "sealed_response": bytes(response).hex(),
            }
        )
    document = {
        "suite": "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM",
        "recipient_private_scalar": f"{PRIVATE_SCALAR:096x}",
        "cases": cases,
    }
    Path(__file__).with_name("sealed-v1.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
