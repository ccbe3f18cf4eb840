"""`cleanroom batch submit|status|fetch|cancel` (docs/batches.md). Wired into cli.py through `register`.

    cleanroom batch submit minilm --url U --api-key K --cacert C --input items.jsonl --ticket job.ticket
    cleanroom batch status --ticket job.ticket --api-key K --cacert C [--wait]
    cleanroom batch fetch  --ticket job.ticket --api-key K --cacert C [--out results.jsonl]
    cleanroom batch cancel --ticket job.ticket --api-key K --cacert C

Input: one item per line. `--format jsonl` (default) sends each line as it is (e.g. `{"inputs": ["a"]}` for
minilm); `--format base64` decodes each line first (raw bytes, safetensors). Output of `fetch`: one JSON
line per item, in order: `{"index": i, "ok": true, "output": "<base64>"}` or
`{"index": i, "ok": false, "error": "<code>"}`. The ticket (mode 0600) holds the server URL, the batch id
and the key material that opens the results; `fetch` deletes it, as the job is shredded once fetched.
The API key comes from `--api-key` or the CLEANROOM_API_KEY environment variable.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO


def _client(args: argparse.Namespace, url: str) -> Any:
    from cleanroom.cli import check_api_key_arg, check_url_arg, public_key_arg
    from cleanroom.client import Client

    check_url_arg(url)
    api_key = args.api_key or os.environ.get("CLEANROOM_API_KEY")
    if not api_key:
        raise SystemExit("cleanroom batch: give --api-key or set CLEANROOM_API_KEY")
    check_api_key_arg(api_key)
    return Client(
        url,
        api_key=api_key,
        public_key=public_key_arg(getattr(args, "public_key", None)),
        pin=getattr(args, "pin", None),
        verify=args.cacert or True,
    )


def _read_items(stream: TextIO | Any, fmt: str) -> list[bytes]:
    items = []
    for number, line in enumerate(stream, start=1):
        raw = line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n").encode("utf-8")
        if not raw.strip():
            continue
        if fmt == "base64":
            try:
                raw = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise SystemExit(f"cleanroom batch submit: line {number} is not base64") from None
        items.append(raw)
    if not items:
        raise SystemExit("cleanroom batch submit: the input has no items")
    return items


def _handle_and_url(args: argparse.Namespace) -> tuple[Any, str]:
    from cleanroom.batch_client import BatchHandle

    handle = BatchHandle.load(args.ticket)
    return handle, args.url or handle.url


def cmd_submit(args: argparse.Namespace) -> int:
    from cleanroom.batch_client import BatchClient

    if args.input in (None, "-"):
        items = _read_items(sys.stdin.buffer, args.format)
    else:
        with open(args.input, "rb") as source:
            items = _read_items(source, args.format)
    # The ticket is the only key to the results: its path is claimed before the job exists, so a path that
    # cannot be written (or an earlier job's ticket, which would be overwritten) loses nothing.
    ticket_fd = _claim_ticket(Path(args.ticket), overwrite=args.overwrite_ticket)
    try:
        with _client(args, args.url) as client:
            handle = BatchClient(client).submit(args.model, items)
    except BaseException:
        os.close(ticket_fd)
        Path(args.ticket).unlink(missing_ok=True)
        raise
    with handle, os.fdopen(ticket_fd, "w", encoding="utf-8") as ticket:
        json.dump(handle.to_ticket(), ticket)
        ticket.write("\n")
        print(json.dumps({"batch_id": handle.batch_id, "items": len(items), "ticket": str(args.ticket)}))
    return 0


def _claim_ticket(path: Path, *, overwrite: bool) -> int:
    """Open the ticket file (mode 0600, never through a symlink) before submitting; refuse an existing one
    unless `overwrite`: it may be the only key to an earlier job's results."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:
        raise SystemExit(
            f"cleanroom batch submit: {path} exists (an earlier job's ticket?); choose another --ticket "
            "or pass --overwrite-ticket"
        ) from None
    except OSError as exc:
        raise SystemExit(f"cleanroom batch submit: cannot write the ticket {path}: {exc.strerror}") from None


def cmd_status(args: argparse.Namespace) -> int:
    from cleanroom.batch_client import BatchClient

    handle, url = _handle_and_url(args)
    with handle, _client(args, url) as client:
        batches = BatchClient(client)
        document = (
            batches.wait(handle.batch_id, timeout_s=args.timeout) if args.wait else batches.status(handle.batch_id)
        )
    print(json.dumps(document))
    return 0 if document["status"] not in ("failed", "cancelled", "expired") else 1


def cmd_fetch(args: argparse.Namespace) -> int:
    from cleanroom.batch_client import BatchClient

    handle, url = _handle_and_url(args)
    # Fetching shreds the job on the server: the results file is made (beside --out, mode 0600: it holds
    # plaintext) before the download, and renamed into place only once complete. A bad --out loses nothing.
    partial = _partial_results_file(Path(args.out)) if args.out else None
    out: TextIO = os.fdopen(partial[0], "w", encoding="utf-8") if partial else sys.stdout
    try:
        with handle, _client(args, url) as client:
            results = BatchClient(client).fetch(handle)
        for i, result in enumerate(results):
            line: dict[str, Any] = {"index": i, "ok": result.ok}
            if result.ok:
                line["output"] = base64.b64encode(result.output).decode("ascii")
            else:
                line["error"] = result.error_code
            out.write(json.dumps(line) + "\n")
        if partial:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(partial[1], args.out)
    except BaseException:
        if partial:
            out.close()
            Path(partial[1]).unlink(missing_ok=True)
        raise
    if not args.keep_ticket:
        Path(args.ticket).unlink(missing_ok=True)  # the job is shredded: the ticket opens nothing any more
    return 0 if all(r.ok for r in results) else 3


def _partial_results_file(out: Path) -> tuple[int, str]:
    """A private temporary file beside `out` (same filesystem, so the final rename is atomic)."""
    try:
        return tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    except OSError as exc:
        raise SystemExit(f"cleanroom batch fetch: cannot write results beside {out}: {exc.strerror}") from None


def cmd_cancel(args: argparse.Namespace) -> int:
    from cleanroom.batch_client import BatchClient

    handle, url = _handle_and_url(args)
    with handle, _client(args, url) as client:
        document = BatchClient(client).cancel(handle.batch_id)
    Path(args.ticket).unlink(missing_ok=True)
    print(json.dumps(document))
    return 0


def _connection(parser: argparse.ArgumentParser, *, url_required: bool) -> None:
    parser.add_argument(
        "--url",
        required=url_required,
        default=None,
        help="server URL" + ("" if url_required else " (default: the ticket's)"),
    )
    parser.add_argument("--api-key", default=None, help="the tenant's API key (or CLEANROOM_API_KEY)")
    parser.add_argument("--cacert", default=None, help="CA certificate to trust (e.g. DATA_DIR/tls/dev-cert.pem)")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    batch = subparsers.add_parser("batch", help="batch jobs: submit, status, fetch, cancel")
    sub = batch.add_subparsers(dest="batch_command", required=True)

    submit = sub.add_parser("submit", help="seal and submit a batch; writes a ticket for status/fetch/cancel")
    submit.add_argument("model")
    _connection(submit, url_required=True)
    submit.add_argument("--public-key", default=None, help="public-key token or file (pins the key)")
    submit.add_argument("--pin", default=None, help="SHA-256 fingerprint of the tenant key to accept")
    submit.add_argument("--input", default=None, help="items, one per line (default: stdin)")
    submit.add_argument("--format", choices=("jsonl", "base64"), default="jsonl")
    submit.add_argument("--ticket", type=Path, required=True, help="where to write the ticket (mode 0600)")
    submit.add_argument(
        "--overwrite-ticket", action="store_true", help="replace an existing ticket file (it may be another job's key)"
    )
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="a batch job's progress")
    status.add_argument("--ticket", type=Path, required=True)
    _connection(status, url_required=False)
    status.add_argument("--wait", action="store_true", help="poll until the job is no longer queued or running")
    status.add_argument("--timeout", type=float, default=600.0)
    status.set_defaults(func=cmd_status)

    fetch = sub.add_parser("fetch", help="download and open the results (the job is shredded afterwards)")
    fetch.add_argument("--ticket", type=Path, required=True)
    _connection(fetch, url_required=False)
    fetch.add_argument("--out", default=None, help="results file, JSON Lines (default: stdout)")
    fetch.add_argument("--keep-ticket", action="store_true")
    fetch.set_defaults(func=cmd_fetch)

    cancel = sub.add_parser("cancel", help="cancel a batch job and shred its data")
    cancel.add_argument("--ticket", type=Path, required=True)
    _connection(cancel, url_required=False)
    cancel.set_defaults(func=cmd_cancel)
