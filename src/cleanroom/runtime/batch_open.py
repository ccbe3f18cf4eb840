"""Open a sealed batch submission straight into an encrypted spill file (DESIGN §4 step 3, for batches).

A batch waits for its turn and may be far larger than what should sit in locked memory, so its plaintext
goes into a `SpillFile` (ciphertext on disk under a key held only in memory) and nowhere else for the
job's lifetime. Two paths, chosen by the payload size against `spill_threshold_bytes`:

- at or under the threshold: the ordinary `RequestOpener.open` (every check, the audit record, decrypt
  into one SecureBuffer), then one copy into the spill; the SecureBuffer is zeroed when `open` ends;
- over it: the same checks and the same audit record, in the same order, then the payload is decrypted
  piece by piece (1 MiB) into one small SecureBuffer and written to the spill, and the AES-GCM tag is
  checked at the end. Until then the spill holds *unauthenticated* plaintext — encrypted on disk and
  read by nobody; if the tag fails the spill is discarded (its key zeroed) and the submission fails with
  400 `decryption_failed`, exactly as the one-shot path would. Peak plaintext in memory: one piece.

Either way the caller gets the spill (sealed and ready to read), the request metadata, and the response
key material the results will be sealed with (`crypto.deferred`). The request's content key itself is
zeroed before this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cleanroom.crypto.deferred import DeferredResponseKey, open_payload_stream, payload_tag
from cleanroom.crypto.sealed import RequestMetadata, open_request_key, parse_request
from cleanroom.errors import ContextMismatch
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.session import CallContext, RequestOpener
from cleanroom.runtime.session_open import decryption_record
from cleanroom.runtime.spill import SpillFile
from cleanroom.tenants import check_credential

PIECE_BYTES = 1 << 20


@dataclass
class SpilledRequest:
    """An opened request whose plaintext lives only in `spill` (ready to read)."""

    metadata: RequestMetadata
    response_key: DeferredResponseKey
    spill: SpillFile
    spilled_in_pieces: bool

    def close(self) -> None:
        self.spill.close()
        self.response_key.close()


def open_into_spill(
    opener: RequestOpener,
    call: CallContext,
    body: bytes | memoryview,
    *,
    new_spill: Callable[[], SpillFile],
    threshold_bytes: int,
    allocator: SecureAllocator,
) -> SpilledRequest:
    """Check, audit and decrypt a sealed request into a new spill file. Raises what `RequestOpener.open`
    raises (400/401/403/503...) or SpillError (503); nothing is left behind on any failure."""
    parsed = parse_request(body)
    if parsed.payload_size_bytes <= threshold_bytes:
        with opener.open(call, body) as request:
            spill = new_spill()
            try:
                spill.write(request.payload.view())
                spill.seek(0)
                key = DeferredResponseKey.from_opened(request._opened, allocator)
            except BaseException:
                spill.close()
                raise
            return SpilledRequest(request.metadata, key, spill, spilled_in_pieces=False)

    # The checks of RequestOpener.open, in its order (tenant, credential, key, HPKE, context, replay, audit).
    tenant = opener.registry.tenant(call.principal.tenant_id)
    check_credential(tenant, call.principal.credential_id)
    private_key = opener.keyring.hpke_private_key(tenant, parsed.key_id)
    with open_request_key(parsed, private_key) as opened:
        meta = opened.metadata
        if meta.tenant_id != call.principal.tenant_id:
            raise ContextMismatch("the request was sealed for another tenant than the API key's")
        if meta.model != call.model or meta.path != call.path:
            raise ContextMismatch("the request was sealed for another model or path than the one called")
        opener.replay.check_and_remember(meta.tenant_id, meta.request_id, meta.ts)
        # Invariant 5: on record before any plaintext exists.
        opener.audit.record({**decryption_record(parsed, meta, call), "spilled": True})
        spill = new_spill()
        scratch = allocator.allocate(PIECE_BYTES + 15)
        try:
            stream = open_payload_stream(opened)
            with scratch.view() as out:
                for count in stream.pieces(out, PIECE_BYTES):
                    spill.write(out[:count])
            stream.finish(payload_tag(opened))  # DecryptionFailed: the spill is discarded below
            spill.seek(0)
            key = DeferredResponseKey.from_opened(opened, allocator)
        except BaseException:
            spill.close()
            raise
        finally:
            scratch.close()
        return SpilledRequest(meta, key, spill, spilled_in_pieces=True)
