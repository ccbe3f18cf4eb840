"""The benchmarks run from a fresh checkout as documented: the quick ones end with exit 0, print a ratio
against the baseline they measure in the same run, write their --json and leave nothing in the temp dir; and
every `benchmarks/...` command cited in README.md, docs/*.md and the scripts' own docstrings names a file
that exists and only options its argparse parser accepts.

The slow benchmarks (servers, minilm: request_path, real_server, load/run.py, middleware/overhead) are not
run here; their parsers are checked like the others'."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.rglob("*.py") if "gpu" not in p.relative_to(BENCH).parts)
RATIO = re.compile(r"\d\.\d+x\b|\bratio\b|\bours x\b")


# --- the quick benchmarks, run with tiny parameters ----------------------------------------------------------
RUNS: dict[str, list[str]] = {
    "aead": ["benchmarks/aead_decrypt_into.py"],
    "policy_sim": ["benchmarks/scheduler/policy_sim.py", "--cost", "gpu", "--duration", "2", "--requests", "200"],
    "spill": ["benchmarks/spill/bench_spill.py", "--size-mib", "1", "--repeats", "1"],
    "key_cache": ["benchmarks/keys/key_cache.py", "--requests", "4", "--tenants", "2"],
    "redaction": [
        "benchmarks/redaction/bench_redaction.py",
        *("--lines", "50", "--engines", "keywords", "--no-baselines"),
    ],
    "audit": ["benchmarks/audit/bench_audit.py", "--quick", "--append-only", "--repeat", "1", "--cases", "w-a 1 dev"],
}
WRITES_JSON = {"aead", "policy_sim", "spill", "redaction", "audit"}


PARSERS = textwrap.dedent(
    """
    import argparse, json, runpy, sys

    class Captured(Exception):
        pass

    def capture(self, args=None, namespace=None):
        raise Captured(self)

    argparse.ArgumentParser.parse_args = capture
    out = {}
    for path in list(sys.argv[1:]):
        sys.argv = [path]  # a script that reads its arguments by hand finds none
        try:
            runpy.run_path(path, run_name="__main__")
        except Captured as caught:
            parser = caught.args[0]
            subs = {}
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    subs = {name: sorted(p._option_string_actions) for name, p in action.choices.items()}
            out[path] = {
                "options": sorted(parser._option_string_actions),
                "subcommands": subs,
                "description": parser.description or "",
            }
        except BaseException as error:  # no parser: it failed (or exited) before parsing anything
            out[path] = None
            print(f"{path}: {type(error).__name__}: {error}", file=sys.stderr)
        else:
            out[path] = None
    print(json.dumps(out))
    """
)


Started = dict[str, tuple[subprocess.Popen[bytes], Path | None, Path | None]]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """Every subprocess of this file at once (each a few CPU seconds at most); each benchmark gets its own
    empty TMPDIR."""
    base = tmp_path_factory.mktemp("bench-smoke")
    processes: Started = {}
    for name, argv in RUNS.items():
        tmp = base / f"{name}-tmp"
        tmp.mkdir()
        out = base / f"{name}.json" if name in WRITES_JSON else None
        command = [sys.executable, *argv, *(["--json", str(out)] if out else [])]
        process = subprocess.Popen(
            command, cwd=REPO, env={**ENV, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        processes[name] = (process, tmp, out)
    paths = [str(p.relative_to(REPO)) for p in SCRIPTS]
    process = subprocess.Popen(
        [sys.executable, "-c", PARSERS, *paths], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    processes[PARSERS_RUN] = (process, None, None)
    yield processes
    for process, _, _ in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


PARSERS_RUN = "(argparse parsers)"


@pytest.fixture(scope="module")
def runs(started: Started) -> dict[str, tuple[int, str, Path, Path | None]]:
    results = {}
    for name in RUNS:
        process, tmp, out = started[name]
        output, _ = process.communicate(timeout=120)
        assert tmp is not None
        results[name] = (process.returncode, output.decode(errors="replace"), tmp, out)
    return results


@pytest.mark.parametrize("name", sorted(RUNS))
def test_quick_benchmark_runs_and_cleans_up(runs: dict[str, tuple[int, str, Path, Path | None]], name: str) -> None:
    returncode, output, tmp, out = runs[name]
    assert returncode == 0, output[-3000:]
    # Nothing left behind: data dirs hold tenant keys and admin tokens.
    assert sorted(p.name for p in tmp.iterdir()) == [], output[-1000:]
    if out is not None:
        assert json.loads(out.read_text()), f"{name} wrote an empty --json"
    if name == "redaction":
        # --no-baselines skips the only in-run baseline (detect-secrets, scrubadub): throughput only.
        assert "MB/s" in output and "RedactingFilter" in output
    elif name == "audit":
        assert "w-a 1 dev b8 +2ms model" in output and "goal" in output  # absolute goal: <= 50 us/record
    else:
        assert RATIO.search(output), output[-2000:]
    if name == "key_cache":
        # Unwraps, not every KMS call, per tenant per TTL: the number docs/keys.md quotes.
        assert "2 unwraps for 4 requests of 2 tenants (1.00 per tenant per TTL)" in output, output


# --- cited commands ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parsers(started: Started) -> dict[str, dict[str, Any] | None]:
    """Each script's argparse parser, as main() builds it (parse_args intercepted: nothing runs)."""
    process = started[PARSERS_RUN][0]
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    found: dict[str, dict[str, Any] | None] = json.loads(stdout.decode().strip().splitlines()[-1])
    return found


def test_every_benchmark_script_has_an_argparse_help(parsers: dict[str, dict[str, Any] | None]) -> None:
    """`--help` works and says what the script measures (bare_server.py and layers_server.py read sys.argv
    by hand: `--help` was a ValueError traceback)."""
    missing = [path for path, parser in parsers.items() if parser is None]
    assert missing == [], f"no argparse parser reached by main(): {missing}"
    undescribed = [path for path, parser in parsers.items() if parser and not parser["description"].strip()]
    assert undescribed == [], f"--help without a description: {undescribed}"


def _snippets(text: str) -> list[str]:
    """Code in markdown or a docstring: fenced blocks and indented lines (backslash continuations joined),
    and inline code spans (which may wrap onto the next line)."""
    found = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
    for block in fenced.findall(text):
        found += block.replace("\\\n", " ").splitlines()
    text = fenced.sub("", text)
    indented: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("    "):
            if indented and line.lstrip().startswith("[--"):  # a usage line wrapped onto the next
                indented[-1] += " " + line.strip()
            else:
                indented.append(line)
    found += indented
    found += re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", text)
    return found


def cited_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script path, words after it) for every command that names a benchmark script."""
    by_name = {p.name: p for p in SCRIPTS if p.name != "run.py" or p.parent.name == "load"}
    sources = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *SCRIPTS]
    cited = []
    for source in sources:
        text = source.read_text()
        if source.suffix == ".py":  # the module docstring only
            match = re.match(r'\s*(?:#[^\n]*\n\s*)*"""(.*?)"""', text, re.S)
            text = match.group(1) if match else ""
        for snippet in _snippets(text):
            for match in re.finditer(r"(?:^|(?<=[\s`(]))((?:benchmarks/)?[\w/]+\.(?:py|sh))\b", snippet):
                path = match.group(1)
                if path.startswith("benchmarks/"):
                    script = REPO / path
                elif "/" not in path and path in by_name and match.start() == len(snippet) - len(snippet.lstrip()):
                    script = by_name[path]  # a table cell naming a script already cited in full: `real_server.py --x`
                else:
                    continue
                rest = re.split(r"\s(?:#|&&|;|\|\s)", snippet[match.end() :])[0]
                words = rest.replace("[", " ").replace("]", " ").replace("|", " ").split()
                cited.append((f"{source.relative_to(REPO)}: {snippet.strip()[:100]}", str(script), words))
    return cited


def test_cited_benchmark_commands_name_real_files_and_flags(parsers: dict[str, dict[str, Any] | None]) -> None:
    cited = cited_commands()
    assert len(cited) >= 30, cited  # the parser above still finds the commands
    problems = []
    for where, script, words in cited:
        path = Path(script)
        if not path.is_file():
            problems.append(f"{where}: {path.relative_to(REPO)} does not exist")
            continue
        if path.suffix != ".py":
            continue
        parser = parsers[str(path.relative_to(REPO))]
        if parser is None:
            continue  # test_every_benchmark_script_has_an_argparse_help names it
        options = set(parser["options"])
        if parser["subcommands"]:
            positional = [w for w in words if not w.startswith("-")]
            flags_given = any(w.startswith("--") for w in words)
            if positional and positional[0] in parser["subcommands"]:
                options |= set(parser["subcommands"][positional[0]])
            elif flags_given:
                problems.append(f"{where}: options without one of {sorted(parser['subcommands'])}")
        for word in words:
            if word.startswith("--") and word.split("=", 1)[0].rstrip(",.;:)") not in options:
                problems.append(f"{where}: {word} is not an option of {path.relative_to(REPO)}")
    assert problems == [], "\n".join(problems)
