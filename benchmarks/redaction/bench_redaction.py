"""Redaction benchmark: throughput and accuracy of `redact` vs detect-secrets and scrubadub, one run.

    .venv/bin/python benchmarks/redaction/bench_redaction.py [--json out.json] [--baseline-lines N]
        [--engines hyperscan,re2,keywords,none] [--no-baselines] [--lines N]

`--lines 200 --baseline-lines 50` is a smoke run of a few seconds (numbers too small to quote).
`--engines hyperscan --no-baselines` measures only what serving uses (15 s instead of 90 s): for
before/after comparisons on a shared box, run it alternately against both trees
(`PYTHONPATH=<old tree>/src` selects the library; the harness and corpus stay the same) and compare medians.

Measures, on the labelled corpus of tests/redaction_corpus.py (single thread, one core):
- lines/s and MB/s of `redact` per line, for each prefilter backend (hyperscan, re2 set, Aho-Corasick
  keywords) and with no prefilter (every rule on every line), on the corpus as generated (~85% of lines hold
  a secret) and on a realistic mix (the same lines diluted to 2% among clean log lines);
- lines/s, MB/s, recall and precision of detect-secrets (all plugins) and scrubadub (default detectors) on
  the same lines (a fixed sample of `--baseline-lines`, as they are slow), beside ours on that sample;
- the median time of a clean 200-byte line through `RedactingFilter`.
Baselines are optional (the `bench` extra): a missing one is reported, not fatal.
"""

# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import redaction_corpus as corpus
from cleanroom.scrubbers._redact_prefilter import KeywordPrefilter
from cleanroom.scrubbers.logs import RedactingFilter, Redactor

ENGINES = ("hyperscan", "re2", "keywords", "none")
CLEAN_200 = (
    "2025-05-01T12:34:56.789Z INFO [cleanroom.server] request completed request_id=9f1c2b7e-4a1d-4c2e-9b3a-"
    "1f2e3d4c5b6a model=minilm status=200 duration_ms=12.3 bytes=48213 tenant=acme queue=0 ok"
)


def _throughput(fn: Callable[[str], object], lines: list[str], repeat: int = 3) -> tuple[float, float]:
    size_mb = sum(len(line.encode()) for line in lines) / 1e6
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for line in lines:
            fn(line)
        runs.append(time.perf_counter() - t0)
    median = statistics.median(runs)  # median, not best: the box may be shared
    return len(lines) / median, size_mb / median


class _NoPrefilter(KeywordPrefilter):
    name = "none"

    def candidates(self, text: str) -> list[int]:
        return self._all

    def __init__(self, rules: object) -> None:
        super().__init__(rules)  # type: ignore[arg-type]
        self._all = list(range(len(rules)))  # type: ignore[arg-type]


def _clean_lines(n: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(n):
        out.append(
            f"2025-05-01T12:{i % 60:02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z INFO [uvicorn.access] "
            f'request_id={rng.getrandbits(128):032x} "POST /v1/models/minilm/infer HTTP/1.1" 200 '
            f"duration_ms={rng.random() * 90:.1f} tokens={rng.randrange(1, 4096)} v0.{rng.randrange(40)}.{rng.randrange(9)}"
        )
    return out


def _ours_finder(redactor: Redactor) -> corpus.Finder:
    return lambda line: [(f.start, f.end, f.label) for f in redactor.find(line)]


def _detect_secrets() -> tuple[Callable[[str], list[tuple[int, int, str]]], str] | None:
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return None
    ctx = default_settings()  # all plugins
    ctx.__enter__()

    def find(line: str) -> list[tuple[int, int, str]]:
        spans = []
        for secret in scan_line(line):
            value = secret.secret_value or ""
            start = line.find(value) if value else -1
            if start >= 0:
                spans.append((start, start + len(value), secret.type))
        return spans

    import detect_secrets

    find.settings_context = ctx  # type: ignore[attr-defined]  # keep the plugins active (GC would close it)
    return find, getattr(detect_secrets, "__version__", "?")


def _scrubadub() -> tuple[Callable[[str], list[tuple[int, int, str]]], str] | None:
    try:
        import scrubadub
    except ImportError:
        return None
    scrubber = scrubadub.Scrubber()

    def find(line: str) -> list[tuple[int, int, str]]:
        return [(f.beg, f.end, f.type) for f in scrubber.iter_filth(line)]

    return find, scrubadub.__version__


def _filter_median_us() -> float:
    flt = RedactingFilter()
    logger = logging.getLogger("bench")
    times = []
    for i in range(30000):
        rec = logger.makeRecord("bench", logging.INFO, __file__, 1, CLEAN_200, None, None)
        t0 = time.perf_counter_ns()
        flt.filter(rec)
        if i >= 1000:
            times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline-lines", type=int, default=1500, help="lines of each corpus the baselines are timed on")
    ap.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated prefilter backends, of {', '.join(ENGINES)}",
    )
    ap.add_argument("--no-baselines", action="store_true", help="skip the detect-secrets/scrubadub comparison")
    ap.add_argument(
        "--lines", type=int, default=None, help="use only the first N lines of the labelled corpus (smoke runs)"
    )
    args = ap.parse_args()
    backends = [b.strip() for b in args.engines.split(",") if b.strip()]
    if not backends or set(backends) - set(ENGINES):
        ap.error(f"--engines takes a comma-separated list of {', '.join(ENGINES)} (got {args.engines!r})")
    if (args.lines is not None and args.lines < 1) or args.baseline_lines < 1:
        ap.error("--lines and --baseline-lines must be >= 1")
    rng = random.Random(1)
    samples = corpus.generate()[: args.lines]
    lines = [s.line for s in samples]
    clean = _clean_lines(len(lines) * 49, rng)
    mix = clean[:]
    for i, line in enumerate(lines[: len(clean) // 49]):
        mix[i * 49] = line
    results: dict[str, object] = {"corpus_lines": len(lines), "corpus_mb": sum(len(x.encode()) for x in lines) / 1e6}

    print(f"corpus: {len(lines)} lines, {results['corpus_mb']:.2f} MB; mix: {len(mix)} lines (2% with a secret)")
    print(f"{'engine':30s} {'corpus lines/s':>15s} {'MB/s':>7s} {'mix lines/s':>12s} {'MB/s':>7s} {'build s':>8s}")
    engines: dict[str, object] = {}
    for backend in backends:
        t0 = time.perf_counter()
        try:
            if backend == "none":
                red = Redactor(prefilter="keywords")
                red._prefilter = _NoPrefilter(red._rules)
            else:
                red = Redactor(prefilter=backend)
        except ImportError as exc:  # hyperscan (x86-64 only), google-re2 (the bench/dev extras)
            print(f"{'redact/' + backend:30s} not available here ({exc})")
            continue
        build = time.perf_counter() - t0
        sub = lines if backend != "none" else lines[:1000]
        lps, mbs = _throughput(red.redact, sub, repeat=3 if backend != "none" else 1)
        mlps, mmbs = _throughput(
            red.redact, mix if backend != "none" else mix[:5000], repeat=3 if backend != "none" else 1
        )
        engines[backend] = {
            "lines_per_s": lps,
            "mb_per_s": mbs,
            "mix_lines_per_s": mlps,
            "mix_mb_per_s": mmbs,
            "build_s": build,
        }
        print(f"{'redact/' + backend:30s} {lps:15,.0f} {mbs:7.2f} {mlps:12,.0f} {mmbs:7.2f} {build:8.2f}")
    results["engines"] = engines

    median = _filter_median_us()
    results["filter_clean_200B_median_us"] = median
    print(f"\nRedactingFilter, clean {len(CLEAN_200)}-byte line: median {median:.2f} us")
    if args.no_baselines:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    ours = Redactor()
    tools: dict[str, tuple[Callable[[str], list[tuple[int, int, str]]], str] | None] = {
        "cleanroom": (_ours_finder(ours), "this"),
        "detect-secrets": _detect_secrets(),
        "scrubadub": _scrubadub(),
    }
    # Same lines for every tool, on both corpora: a fixed sample of the secret-dense corpus, and a stretch
    # of the realistic mix. Recall/precision are scored on the labelled lines of each (the mix's clean
    # lines carry no labels, so they can only cost precision).
    dense = random.Random(2).sample(samples, min(args.baseline_lines, len(samples)))
    mix_labelled = {line: sample for line, sample in zip(lines, samples, strict=True)}
    mix_lines = mix[: args.baseline_lines * 2]
    mix_samples = [mix_labelled.get(line) or corpus.Sample(line) for line in mix_lines]
    compare: dict[str, object] = {}
    for corpus_name, sample in (("dense", dense), ("mix", mix_samples)):
        sample_lines = [s.line for s in sample]
        print(f"\n{corpus_name}: {len(sample)} lines, same lines for every tool (median of 3 runs)")
        print(f"{'tool':18s} {'lines/s':>10s} {'MB/s':>8s} {'ours x':>8s} {'recall':>8s} {'precision':>10s}")
        per_tool: dict[str, dict[str, object]] = {}
        for name, tool in tools.items():
            if tool is None:
                print(f"{name:18s} not installed (pip install '.[bench]')")
                continue
            find, version = tool
            lps, mbs = _throughput(ours.redact if name == "cleanroom" else find, sample_lines, repeat=3)
            score = corpus.score(find, sample)
            recall, precision = score.overall()
            per_tool[name] = {
                "version": version,
                "lines_per_s": lps,
                "mb_per_s": mbs,
                "recall": recall,
                "precision": precision,
            }
        our_mbs = per_tool["cleanroom"]["mb_per_s"]
        for name, row in per_tool.items():
            row["ours_times_faster"] = our_mbs / row["mb_per_s"]  # type: ignore[operator]
            print(
                f"{name:18s} {row['lines_per_s']:10,.0f} {row['mb_per_s']:8.3f} {row['ours_times_faster']:8.1f} {row['recall']:8.4f} {row['precision']:10.4f}"
            )
        compare[corpus_name] = per_tool
    results["compare"] = compare
    hs = engines.get("hyperscan", {"mb_per_s": float("nan"), "mix_mb_per_s": float("nan")})
    print(
        f"goals: >= 20 MB/s dense {hs['mb_per_s']:.1f} mix {hs['mix_mb_per_s']:.1f}; "  # type: ignore[index]
        f"<= 5 us filter {median:.2f}; >= 100x baselines (see 'ours x')"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
