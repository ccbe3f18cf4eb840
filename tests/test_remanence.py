"""Invariant 1, attacked: after a request, the server's memory holds zero copies of its plaintext.

The scan reads the server's /proc/PID/mem from this (separate) process. The control proves the scan can
see the marker: while the `hold` model keeps a request inside the model, the marker must be found.
"""

from __future__ import annotations

import json
import secrets
import struct
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from cleanroom.client import ClientError
from support.memscan import encodings, scan_files, scan_process


def new_marker() -> str:
    return "crmark" + secrets.token_hex(16)


def marker_payload(marker: str, size: int = 4096) -> bytes:
    raw = marker.encode()
    return (raw + b" ") * (size // (len(raw) + 1))


def minilm_texts(marker: str) -> list[str]:
    """Texts with the marker well inside them: allocator free-list pointers overwrite the first 8-16 bytes
    of a freed chunk, so a marker at the very start of a short string could vanish by accident."""
    pad = "lorem ipsum dolor sit amet " * 8
    return [f"{pad}{marker}{pad}", f"my account note {marker} please embed {pad}", marker]


def refused_payloads(marker: str) -> list[tuple[str, bytes]]:
    """Requests the models refuse (422) that carry the marker: not JSON, not UTF-8, a broken safetensors
    header, and inputs of the wrong type."""
    raw = marker.encode()
    header = b'{"x": {"note": "' + raw * 20 + b'"'  # unterminated
    return [
        ("minilm", b'{"inputs": ["' + raw * 50),  # not JSON
        ("minilm", b"\xff" + (raw + b" ") * 50),  # not UTF-8
        ("minilm", json.dumps({"inputs": [f"{marker} " * 50, 5]}).encode()),  # not all strings
        ("double", struct.pack("<Q", len(header)) + header),  # user model, header not JSON
    ]


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_no_plaintext_left_after_requests(shared_server) -> None:
    server = shared_server
    echo_marker, minilm_marker, hold_marker, refused_marker = new_marker(), new_marker(), new_marker(), new_marker()
    signals: Path = server.signal_dir
    with server.client("alpha") as client:
        # Control first: the scan must see a marker that is held inside the model right now.
        payload = save({"input": torch.frombuffer(bytearray(marker_payload(hold_marker)), dtype=torch.uint8)})
        result: dict[str, bytes] = {}
        worker = threading.Thread(
            target=lambda sent=payload, out=result: out.setdefault("out", client.infer("hold", sent))
        )
        worker.start()
        wait_for(signals / "holding")
        held_hits = scan_process(server.pid, encodings(hold_marker))
        # Inference runs off the event loop: the server answers while a request is inside the model.
        started = time.monotonic()
        assert server.healthy() and time.monotonic() - started < 2
        (signals / "release").touch()
        worker.join(60)
        assert sum(held_hits.values()) > 0, "control failed: the scan cannot see a request held in the model"
        assert hold_marker.encode() in result["out"]

    with server.client("alpha") as client:  # a fresh connection: the held one sat idle in the scan
        echo_payload = marker_payload(echo_marker, 64 * 1024)
        for _ in range(3):
            assert client.infer("echo", echo_payload) == echo_payload
        for _ in range(3):
            out = client.infer("minilm", json.dumps({"inputs": minilm_texts(minilm_marker)}).encode())
            assert len(out) > 384 * 4
        # Refused inputs too: a decoder's exception holds the whole input (JSONDecodeError.doc,
        # UnicodeDecodeError.object), and once chained to the answer's error it outlived the request.
        for bad in refused_payloads(refused_marker):
            with pytest.raises(ClientError) as info:
                client.infer(bad[0], bad[1])
            assert info.value.status == 422
    del payload, result, echo_payload
    time.sleep(0.5)
    needles = encodings(echo_marker) + encodings(minilm_marker) + encodings(hold_marker) + encodings(refused_marker)
    hits = scan_process(server.pid, needles)
    assert hits == {}, f"plaintext markers left in server memory after the requests: {hits}"
    leaked_files = (
        scan_files(server.data_dir, needles)
        + scan_files(server.tmp_dir, needles)
        + scan_files(Path(tempfile.gettempdir()) / "cleanroom", needles)
    )
    assert leaked_files == []
    assert not any(n in server.log_path.read_bytes() for n in needles), "a marker reached the server log"


def test_without_allocator_hardening_the_scan_finds_leftovers(tmp_path: Path) -> None:
    """Negative control: the same requests on an unhardened server leave copies the scan finds.

    This is why `serve` re-executes itself with PYTHONMALLOC=malloc and glibc's perturb tunables; if this
    test ever passes with zero hits, the remanence test above has stopped proving anything.
    """
    from support.server import server_env, start_server

    server = start_server(
        tmp_path / "data", "--models", "echo,minilm", env=server_env(CLEANROOM_ALLOCATOR_HARDENING="false")
    )
    try:
        server.create_tenant("gamma")
        marker = new_marker()
        with server.client("gamma") as client:
            client.infer("echo", marker_payload(marker, 8192))
            for _ in range(3):
                client.infer("minilm", json.dumps({"inputs": minilm_texts(marker)}).encode())
        time.sleep(0.5)
        assert sum(scan_process(server.pid, encodings(marker)).values()) > 0
    finally:
        server.stop()


@pytest.mark.parametrize("engine", ["hyperscan", "python"])
def test_the_scanner_counts_every_copy_once_across_chunk_edges(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scanner reads memory in chunks: a marker cut by a chunk edge must be found, and found once (the
    edge buffer holds the end of the last chunk). Checked on a file, read through the same code, with
    1000-byte chunks and markers at every offset around the edges, against `bytes.count` of the whole."""
    import os
    import random

    from support import memscan

    if engine == "python":
        monkeypatch.setattr(memscan, "hyperscan", None)
    elif memscan.hyperscan is None:
        pytest.skip("no Hyperscan on this platform: the python engine is the scanner here")
    monkeypatch.setattr(memscan, "CHUNK", 1000)
    needles = [n for m in ("crscanAAAA1111", "crscanBBBB2222") for n in encodings(m)]
    rng = random.Random(7)
    for edge_offset in range(-60, 4):
        data = bytearray(rng.choice([b"\0", b"c", b"x"]) * 3000)
        needle = needles[edge_offset % len(needles)]
        at = 1000 + edge_offset
        data[at : at + len(needle)] = needle
        data[2000 - len(needles[0]) : 2000] = needles[0]  # one ending exactly at an edge
        path = tmp_path / "memory.bin"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            scan = memscan._scan_python if engine == "python" else memscan._scan_hyperscan
            found = scan(fd, [(0, len(data), "f")], needles).get("f", 0)
        finally:
            os.close(fd)
        assert found == sum(bytes(data).count(n) for n in needles) > 0, edge_offset
