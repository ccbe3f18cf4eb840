"""Transit batch calls: wrap, unwrap and rewrap many keys in one round trip each (`batch_input`).

One job: the bulk paths (a tenant's keys at start-up, the background rewrap after a rotation), which
group items by master key, cut them into batches, read each item's own error, and on unwrap hand back all
keys or none (one failure zeroes the ones already decrypted). It is separate from `vault.py` because the
single-key protocol does not need any of this bookkeeping; `VaultTransitKMS` inherits it as a mixin so
that every request still goes through the instance's `_request`.

OpenBao refuses request bodies with more than 1000 JSON strings (listener max_request_json_strings); a
batch item is 4 strings, so 240 items is the ceiling there (measured: 240 passes, 300 is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cleanroom.errors import CleanroomError, KMSUnavailable
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.vault_format import b64, check_key_name, decode_into_bytearray, zero

MAX_BATCH_ITEMS = 200


class TransitBatchCalls:
    """`wrap_many` / `unwrap_many` / `rewrap_many` for `VaultTransitKMS` (which supplies the hooks below)."""

    _batch_size: int
    _retry_after_s: float

    if TYPE_CHECKING:  # provided by VaultTransitKMS

        def _request(
            self, method: str, path: str, payload: dict[str, Any] | None = None, *, batch: bool = False
        ) -> dict[str, Any]: ...
        def _check_local_seal(self, key_name: str) -> None: ...
        def _is_derived(self, key_name: str) -> bool: ...
        def _context_field(self, key_name: str, context: bytes) -> dict[str, str]: ...
        def _to_wrapped(self, key_name: str, text: Any) -> WrappedKey: ...
        def _to_transit(self, wrapped: WrappedKey) -> str: ...
        def _batch_item_error(self, index: int, message: str, path: str) -> CleanroomError: ...
        def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey: ...

    def wrap_many(
        self, key_name: str, items: Sequence[tuple[bytes | bytearray | memoryview, bytes]]
    ) -> list[WrappedKey]:
        """Wrap many (plaintext, context) pairs under `key_name`'s newest version, in batches."""
        check_key_name(key_name)
        self._check_local_seal(key_name)
        out: list[WrappedKey] = []
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            batch = [{"plaintext": b64(pt), **self._context_field(key_name, ctx)} for pt, ctx in chunk]
            for index, result in enumerate(self._batch(f"encrypt/{key_name}", batch), start):
                if result.get("error"):
                    raise self._batch_item_error(index, str(result["error"]), f"encrypt/{key_name}")
                out.append(self._to_wrapped(key_name, result.get("ciphertext")))
        return out

    def unwrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[bytearray]:
        """Unwrap many (wrapped, context) pairs; all or nothing: one failure zeroes the rest and raises."""
        results: list[bytearray | None] = [None] * len(items)
        try:
            for key_name, indexed in _group_by_key(items).items():
                check_key_name(key_name)
                self._check_local_seal(key_name)
                for start in range(0, len(indexed), self._batch_size):
                    chunk = indexed[start : start + self._batch_size]
                    batch = [
                        {"ciphertext": self._to_transit(w), **self._context_field(key_name, ctx)}
                        for _, (w, ctx) in chunk
                    ]
                    for (index, _), result in zip(chunk, self._batch(f"decrypt/{key_name}", batch), strict=True):
                        if result.get("error"):
                            raise self._batch_item_error(index, str(result["error"]), f"decrypt/{key_name}")
                        text = result.get("plaintext")
                        if not isinstance(text, str):
                            raise KMSUnavailable("Transit returned no plaintext", retry_after_s=self._retry_after_s)
                        results[index] = decode_into_bytearray(text)
        except BaseException:
            for key in results:
                if key is not None:
                    zero(key)
            raise
        return [key for key in results if key is not None]

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[WrappedKey]:
        """Rewrap many stored keys to the newest version (the background rewrap's bulk path)."""
        results: list[WrappedKey | None] = [None] * len(items)
        for key_name, indexed in _group_by_key(items).items():
            check_key_name(key_name)
            self._check_local_seal(key_name)
            if not self._is_derived(key_name):
                for index, (wrapped, ctx) in indexed:
                    results[index] = self.rewrap(wrapped, ctx)
                continue
            for start in range(0, len(indexed), self._batch_size):
                chunk = indexed[start : start + self._batch_size]
                batch = [
                    {"ciphertext": self._to_transit(w), **self._context_field(key_name, ctx)} for _, (w, ctx) in chunk
                ]
                for (index, _), result in zip(chunk, self._batch(f"rewrap/{key_name}", batch), strict=True):
                    if result.get("error"):
                        raise self._batch_item_error(index, str(result["error"]), f"rewrap/{key_name}")
                    results[index] = self._to_wrapped(key_name, result.get("ciphertext"))
        return [wrapped for wrapped in results if wrapped is not None]

    def _batch(self, path: str, batch: list[dict[str, str]]) -> list[dict[str, Any]]:
        """POST a batch_input; per-item errors come back in the items, not as one failed call.

        `partial_failure_response_code=200` asks for that (Vault >= 1.14, OpenBao); a server that ignores
        it answers 400 with the items in the body, which `_request(batch=True)` hands back too.
        """
        payload: dict[str, Any] = {"batch_input": batch, "partial_failure_response_code": 200}
        data = self._request("POST", path, payload, batch=True).get("data", {})
        results = data.get("batch_results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise KMSUnavailable("Transit returned a batch of the wrong size", retry_after_s=self._retry_after_s)
        return [r if isinstance(r, dict) else {"error": "malformed batch item"} for r in results]


def _group_by_key(
    items: Sequence[tuple[WrappedKey, bytes]],
) -> dict[str, list[tuple[int, tuple[WrappedKey, bytes]]]]:
    groups: dict[str, list[tuple[int, tuple[WrappedKey, bytes]]]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item[0].key_name, []).append((index, item))
    return groups
