"""Recall and precision on the seventh corpus (tests/redaction_corpus_seventh.py): PII in business logs
(helpdesk/CRM, orders and payment gateways, SEPA/MT940, payroll, HL7, email headers, SIP, SMS) and in
network/security logs (Cisco, Juniper, iptables/pf, DNS, DHCP, VPC flow, ALB/CloudFront/nginx, Zeek,
Suricata, Windows events, LDAP), IPv6 in every notation and addresses inside host names. Same thresholds as
the other corpora: every type at recall and precision >= 99.5%, every look-alike kind surviving >= 99.5%.
Run with `-s` to see the per-type table.
"""

from __future__ import annotations

import pytest

import redaction_corpus as corpus
import redaction_corpus_seventh as seventh
from cleanroom.scrubbers.logs import Redactor, default_redactor
from test_redaction_corpus import _check, _finder

# Placeholder label -> this corpus's type, so a false finding is charged to the type its label claims;
# any other label (a secret's) is charged to `secret`: this corpus holds no secrets, so any is false.
SEVENTH_LABELS = {
    "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "credit_card", "SSN": "ssn", "IBAN": "iban", "IPV4": "ipv4",
    "IPV6": "ipv6",
}  # fmt: skip


class _Labels(dict[str, str]):
    def __bool__(self) -> bool:
        return True

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return SEVENTH_LABELS.get(key, "secret")


SEEDS = [7007, 424277]
LINES = 3000


@pytest.fixture(scope="module")
def samples() -> dict[int, list[corpus.Sample]]:
    return {seed: seventh.generate(seed=seed, lines=LINES) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_seventh_recall_and_precision(seed: int, samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[seed]
    result = corpus.score(_finder(default_redactor()), lines, _Labels())
    print(f"\nseventh redaction corpus seed={seed}: {sum(result.total.values())} positives\n{result.table()}")
    failures = _check(result, sorted(seventh.all_types(lines)), sorted(seventh.negative_kinds(lines)), "seventh corpus")
    assert not failures, (
        "\n".join(failures) + "\nmissed:\n" + "\n".join(result.missed_examples[:30])
        + "\nfalse:\n" + "\n".join(result.false_examples[:30])
    )  # fmt: skip


def test_seventh_covers_every_type_and_look_alike(samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[SEEDS[0]]
    assert len(lines) == LINES
    assert {"email", "phone", "credit_card", "ssn", "iban", "ipv4", "ipv6"} == seventh.all_types(lines)
    assert {"masked_card", "luhn_invalid", "version", "oid", "mac", "asn", "port_list", "uuid", "hex", "timestamp",
            "epoch", "duration", "bytes", "ticket", "tracking", "isbn", "ean", "gtin", "order", "invoice",
            "creditor_id", "iban_invalid", "sid", "flow_id", "rrn", "account_id", "loopback", "unspecified",
            "message_id", "call_id", "sd_id", "date", "ec2_hostname"} <= seventh.negative_kinds(lines)  # fmt: skip


def test_seventh_is_deterministic() -> None:
    a, b = seventh.generate(seed=3, lines=300), seventh.generate(seed=3, lines=300)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]


def test_seventh_labels_are_well_formed(samples: dict[int, list[corpus.Sample]]) -> None:
    corpus.check_labels(samples[SEEDS[1]])


def test_seventh_placeholders_leave_nothing() -> None:
    """No positive value survives in the output and every look-alike does, verbatim; lines stay lines."""
    corpus.check_redacted(seventh.generate(seed=77, lines=1000), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_seventh_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in seventh.generate(seed=17, lines=600):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line


# The classes of misses and over-redactions this corpus found, pinned with inputs of their own (other
# spellings than the generator's): (line, what must go, what must stay)
PINNED = [
    # a SIP dialog id is not a mailbox; the caller's address still is
    ("Call-ID: 3848276298220188511@atlanta.example.com", [], ["3848276298220188511@atlanta.example.com"]),
    (
        '{"call_id":"a84b4c76e66710@pc33.example.com","from":"alice@example.com"}',
        ["alice@example.com"],
        ["a84b4c76e66710@pc33.example.com"],
    ),
    # barcodes and flow ids that pass Luhn are not cards; a PAN beside them is
    ('{"gtin": "4006381330060", "pan": "4539578763621486"}', ["4539578763621486"], ["4006381330060"]),
    ("<EAN>5012345678900</EAN> <UPC>4539578763621486</UPC>", [], ["5012345678900", "4539578763621486"]),
    ('alert flow_id=4539578763621486 sig="ET SCAN"', [], ["4539578763621486"]),
    # a zero-padded ISO 8583 amount is not `00` + a country code
    ('<field id="4" value="004912345678"/>', [], ["004912345678"]),
    # columns of numbers (ALB: status codes, byte counts) are not a NANP number; a spaced one alone is
    ('10.0.0.1:8080 0.000 0.001 0.000 200 200 749 7084 "GET / HTTP/1.1"', ["10.0.0.1"], ["200 200 749 7084"]),
    ("call 415 555 0123 after 5pm", ["415 555 0123"], []),
    # phones and cards in query strings and form bodies
    ("GET /c?phone=%2B44%20(0)20%207946%200958&x=1", ["%2B44%20(0)20%207946%200958"], []),
    ("GET /c?tel=%28415%29%20555-0123", ["415", "555-0123"], []),
    ("POST /pay card=5555%205555%205555%204444&cvc=1", ["5555%205555%205555%204444"], []),
    ("card_number=4111+1111+1111+1111&exp=1228", ["4111+1111+1111+1111"], []),
    ("q=1234+5678+9012+3456", [], ["1234+5678+9012+3456"]),
    # magnetic-stripe track 1
    ("track1=%B4539578763621486^DOE/JANE^28121010000?", ["4539578763621486"], ["DOE/JANE"]),
    # SSN keys spelled otherwise
    ("SSN#: 219099999", ["219099999"], []),
    ('{"SSN_Number":"219099999"}', ["219099999"], []),
    # HL7 v2: PID-19 without separators, XTN phone components
    ("PID|1||4455^^^H^MR||ROE^RICHARD||19700101|M|||||||||||219099999|", ["219099999"], ["19700101"]),
    ("NK1|1|ROE^MARY|SPO||^WPN^CP^^49^30^12345678", ["49^30^12345678"], []),
    # an XML element as the phone key
    ("<MSISDN>4917612345678</MSISDN>", ["4917612345678"], []),
    # MT940 `:86:` subfield `?31` then an IBAN
    (":86:166?00GUTSCHRIFT?31GB82WEST12345698765432?32ROE RICHARD", ["GB82WEST12345698765432"], ["ROE RICHARD"]),
    # reverse DNS of one IPv6 address; a zone (a network) is not one
    ("PTR 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", ["1.0.0.0.0.0"], []),
    ("zone 8.b.d.0.1.0.0.2.ip6.arpa loaded", [], ["8.b.d.0.1.0.0.2.ip6.arpa"]),
    # tcpdump/pf `address.port`
    ("IP 192.0.2.10.443 > 198.51.100.7.51234: Flags [P.]", ["192.0.2.10", "198.51.100.7"], []),
    ("IP6 2001:db8::a.443 > 2001:db8::b.51234: Flags [P.]", ["2001:db8::a", "2001:db8::b"], []),
    # an address in a public reverse-DNS name; not a private host's own name, not a dated file
    ("Received: from c-73-15-22-101.hsd1.ca.comcast.net", ["73-15-22-101"], []),
    ("client 81-2-3-4.static.isp.example.net connected", ["81-2-3-4"], []),
    ("Nov 29 12:50:41 ip-10-0-1-23 sshd[42]: node ip-10-0-1-23.ec2.internal", [], ["ip-10-0-1-23.ec2.internal"]),
    ("redis-cli -h 10-0-3-7.ec2.internal info", [], ["10-0-3-7.ec2.internal"]),
    ("restore backup-2026-11-29-01.tar.gz", [], ["backup-2026-11-29-01.tar.gz"]),
    # an OID right after `OID` is not an address
    ("cert attribute OID 2.5.4.3 (commonName)", [], ["2.5.4.3"]),
]


@pytest.mark.parametrize(("line", "gone", "kept"), PINNED)
def test_seventh_pinned(line: str, gone: list[str], kept: list[str]) -> None:
    out = default_redactor().redact(line)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out
