"""Dockerfile.cuda: CUDA 12 runtime base, the gpu extra, a non-root user, a health check, `cleanroom serve`,
and no secret baked into the image. The checker is run against broken variants too, so a check that
passes everything is caught."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile.cuda"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|API_?KEY)", re.IGNORECASE)
SECRET_VALUE = re.compile(r"(-----BEGIN|AKIA[0-9A-Z]{16}|hvs\.[A-Za-z0-9]|sk-[A-Za-z0-9]{16})")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (op, _) in enumerate(instrs) if op == "FROM"]
    assert starts, "no FROM"
    return instrs[starts[-1] :]


def resolve(image: str, instrs: list[tuple[str, str]]) -> str:
    """Substitute global ARG defaults (the ones before the first FROM) into an image reference."""
    args = {}
    for op, rest in instrs:
        if op == "FROM":
            break
        if op == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name.strip()] = value.strip()
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)


def problems(text: str) -> list[str]:
    """Everything wrong with a Dockerfile for our image policy (empty list: fine)."""
    found: list[str] = []
    instrs = instructions(text)
    final = final_stage(instrs)
    image = resolve(final[0][1].split()[0], instrs)
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)(?:\.\d+)?-(\w+)(?:-[\w.-]+)?", image)
    if not m:
        found.append(f"final base image is not a pinned nvidia/cuda tag: {image}")
    else:
        if m.group(1) != "12":
            found.append(f"base image is CUDA {m.group(1)}, not 12")
        if m.group(3) not in ("runtime", "base") and not image.split(":")[1].count("cudnn-runtime"):
            found.append(f"final base image is a {m.group(3)} image, not a runtime image")
    users = [rest for op, rest in final if op == "USER"]
    if not users:
        found.append("no USER in the final stage: the container would run as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        found.append("final USER is root")
    checks = [rest for op, rest in final if op == "HEALTHCHECK"]
    if not checks or checks[-1].upper().startswith("NONE"):
        found.append("no HEALTHCHECK")
    entry = [rest for op, rest in final if op == "ENTRYPOINT"]
    if not entry or not re.search(r'"cleanroom",\s*"serve"', entry[-1]):
        found.append("ENTRYPOINT is not cleanroom serve")
    if not any(op == "RUN" and re.search(r"pip install [^&]*\.\[[^\]]*\bgpu\b", rest) for op, rest in instrs):
        found.append("the package is not installed with its gpu extra")
    for op, rest in instrs:
        if op in ("ENV", "ARG", "LABEL"):
            for name, value in re.findall(r"([A-Za-z_][\w.]*)\s*=\s*(\"[^\"]*\"|\S+)", rest):
                if SECRET_NAME.search(name) and value.strip('"'):
                    found.append(f"{op} {name} bakes a secret-looking value into the image")
        if SECRET_VALUE.search(rest):
            found.append(f"{op} contains key material")
        if op in ("COPY", "ADD") and re.search(r"\.(pem|key|p12|pfx|env)\b|id_rsa|\.ssh|secrets?", rest):
            found.append(f"{op} copies a secret file: {rest}")
        if op == "ADD" and re.search(r"https?://", rest):
            found.append("ADD from a URL (unverified download)")
    return found


def test_dockerfile_cuda_is_clean() -> None:
    assert problems(DOCKERFILE.read_text()) == []


def test_base_and_user_specifics() -> None:
    instrs = instructions(DOCKERFILE.read_text())
    final = final_stage(instrs)
    assert resolve(final[0][1], instrs).startswith("nvidia/cuda:12.")
    assert "-runtime-" in resolve(final[0][1], instrs)
    assert [rest for op, rest in final if op == "USER"] == ["10001:10001"]
    assert not any(op == "ENV" and "PYTORCH_CUDA_ALLOC_CONF" in rest for op, rest in instrs)  # native allocator


GOOD = DOCKERFILE.read_text()


@pytest.mark.parametrize(
    ("variant", "complaint"),
    [
        (GOOD.replace("USER 10001:10001", "USER root"), "final USER is root"),
        (GOOD.replace("USER 10001:10001\n", ""), "no USER"),
        (GOOD.replace("12.6.3-runtime-ubuntu24.04", "12.6.3-devel-ubuntu24.04"), "not a runtime image"),
        (GOOD.replace("12.6.3-runtime-ubuntu24.04", "11.8.0-runtime-ubuntu22.04"), "not 12"),
        (
            GOOD.replace("ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04", "ARG CUDA_IMAGE=nvidia/cuda:latest"),
            "not a pinned",
        ),
        (
            GOOD.replace(
                "CLEANROOM_DATA_DIR=/data", "CLEANROOM_DATA_DIR=/data \\\n    CLEANROOM_VAULT_TOKEN=hvs.CAESIabc"
            ),
            "secret",
        ),
        (
            GOOD.replace(
                "ENV DEBIAN_FRONTEND=noninteractive\n", "ENV DEBIAN_FRONTEND=noninteractive\nARG API_KEY=abc123\n"
            ),
            "secret-looking",
        ),
        (GOOD.replace("COPY src ./src", "COPY src ./src\nCOPY master.key /data/"), "secret file"),
        (GOOD.replace('pip install ".[gpu]"', 'pip install "."'), "gpu extra"),
        (re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "HEALTHCHECK NONE\n", GOOD), "HEALTHCHECK"),
        (GOOD.replace('ENTRYPOINT ["cleanroom", "serve"]', 'ENTRYPOINT ["bash"]'), "ENTRYPOINT"),
    ],
)
def test_checker_catches_broken_variants(variant: str, complaint: str) -> None:
    assert variant != GOOD
    assert any(complaint in p for p in problems(variant)), problems(variant)
