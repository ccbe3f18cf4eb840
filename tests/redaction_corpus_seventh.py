"""A seventh labelled corpus for the log redactor: PII in business logs and network/security logs.

The six other corpora centre on application, server and infrastructure logs and on credentials. This one
reproduces where personal data sits in the logs of the businesses a service runs for and of the networks
it runs on: helpdesk/CRM tickets and CSV exports (names next to emails and phones), e-commerce order and
payment-gateway logs (PANs under `pan=`, `card_number`, `ccnum`, XML `<PAN>`, ISO 8583 field dumps, query
strings; masked PANs beside them), SEPA pain.001 XML and MT940 statements (IBANs after `?31`, `:25:BIC/`),
HR/payroll exports (SSNs dashed, spaced and bare under an SSN key), HL7 v2 segments (PID phones in plain and
XTN component form, PID-19 SSN), email headers (display names, `mailto:`), SIP/VoIP (`sip:+E164@host`,
`tel:`), SMS gateways (E.164, `msisdn=` without `+`), phones of US/UK/DE/FR/IN/BR/JP/AU in their national
spacing with `(0)` trunk prefixes and extensions, Cisco ASA/IOS, Juniper (structured data), iptables/
nftables, pf/tcpdump (`ip.port`), BIND/dnsmasq (reverse `in-addr.arpa`/`ip6.arpa` names), ISC DHCP,
AWS VPC flow logs, ALB/CloudFront/nginx access logs, Zeek and Suricata EVE JSON, Windows Security event
XML, OpenLDAP and AD LDIF, and IPv6 in every notation (full, compressed, upper case, `::ffff:` mapped,
NAT64, `%zone`, `[v6]:port`, CIDR) plus IPv4 in hostnames (`ip-10-0-1-23.ec2.internal`).

It was written before reading the redactor's rules. Policy followed (docs/logging.md): 127.0.0.1, 0.0.0.0,
`::1` are kept, every other address is an address (private and RFC 5737/3849 documentation ranges too); a
masked PAN (`411111******1111`) is not a card; emails at `example.com`-style domains are emails (a log
cannot tell a placeholder domain from a real one, and a user expects every mailbox gone). Personal names,
user names and postal addresses are personal data but outside the redactor's types (issue 7), so they are
neither positives nor look-alikes. A reversed address in a PTR name (`23.1.168.192.in-addr.arpa`,
`…ip6.arpa` nibbles) still names the host, so it is an address.

Every sensitive value on a line is a positive span with its type, every look-alike that must survive
byte-identical is a negative span with its kind (`mk(..., ("value", "~kind"))`).
"""

# ruff: noqa: E501  (test data: long log lines)

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

from redaction_corpus import ALNUM, DIGITS, HEX, UPPER, Sample, weighted_families
from redaction_corpus import _rand as r
from redaction_corpus import all_types as all_types  # re-exported: the tests call corpus.all_types
from redaction_corpus import negative_kinds as negative_kinds
from redaction_corpus_unseen import Frag, mk

R = random.Random


def nz(rng: R, n: int) -> str:
    """n digits, the first not zero."""
    return rng.choice("123456789") + r(rng, DIGITS, n - 1)


# ---------------------------------------------------------------- people

FIRST = ["Jane", "Ana", "Bjorn", "Chidi", "Dana", "Elif", "Femi", "Greta", "Hiro", "Ines", "Priya", "Rahul", "Yuki",
         "Lucas", "Chloé", "Jürgen", "Siobhan", "Mateus", "Aiko", "Liam", "Olivia", "Noah", "Zoë"]  # fmt: skip
LAST = ["Doe", "Okafor", "Lindqvist", "Yilmaz", "Tanaka", "Moreau", "Kowalski", "Reyes", "Müller", "Silva", "Sharma",
        "O'Connor", "Nguyen", "Smith", "Dubois", "Santos", "Patel", "Schmidt", "Rossi"]  # fmt: skip
DOMAINS = ["acme.io", "example.com", "example.org", "mail.example.co.uk", "shop-customer.de", "gmail.com",
           "outlook.fr", "corp.acme.io", "uni-example.edu.au", "empresa.com.br", "example.co.jp", "yahoo.co.in",
           "helpdesk.example.net", "bigcorp.com"]  # fmt: skip


def _ascii(s: str) -> str:
    return s.lower().replace("ü", "u").replace("é", "e").replace("ë", "e").replace("'", "")


def person(rng: R) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def email_for(rng: R, first: str, last: str) -> str:
    f, s = _ascii(first), _ascii(last)
    local = rng.choice([f"{f}.{s}", f"{f[0]}{s}", f"{f}_{s}{rng.randrange(10, 99)}", f"{f}.{s}+orders", f"{s}.{f}",
                        f"{f}{rng.randrange(1970, 2005)}", f"{f.capitalize()}.{s.capitalize()}", f"{f}-{s}"])  # fmt: skip
    return f"{local}@{rng.choice(DOMAINS)}"


def email(rng: R) -> str:
    return email_for(rng, *person(rng))


# ---------------------------------------------------------------- phones


def nanp_parts(rng: R) -> tuple[str, str, str]:
    while True:
        a = f"{rng.randrange(2, 10)}{rng.randrange(0, 9)}{rng.randrange(0, 10)}"
        if a[1:] != "11":
            break
    return a, f"{rng.randrange(2, 10)}{r(rng, DIGITS, 2)}", r(rng, DIGITS, 4)


def phone_nanp(rng: R) -> str:
    a, e, n = nanp_parts(rng)
    return rng.choice([f"({a}) {e}-{n}", f"{a}-{e}-{n}", f"{a}.{e}.{n}", f"+1 {a} {e} {n}", f"+1 ({a}) {e}-{n}",
                       f"+1-{a}-{e}-{n}", f"+1{a}{e}{n}", f"1-{a}-{e}-{n}", f"({a}){e}-{n}"])  # fmt: skip


def phone_intl(rng: R) -> str:
    d = lambda n: r(rng, DIGITS, n)  # noqa: E731
    forms = [
        # UK
        f"+44 20 7{d(3)} {d(4)}", f"+44 (0)20 7{d(3)} {d(4)}", f"+44 7700 9{d(5)}", f"+44 161 496 {d(4)}", f"+447{d(9)}",
        f"+44 (0) 131 {d(3)} {d(4)}",
        # DE
        f"+49 30 {d(8)}", f"+49 (0)30 {d(7)}", f"+49 151 {d(8)}", f"+49 89 {d(4)}-{d(4)}", f"+49 (0) 221 {d(6)}", f"+4917{d(9)}",
        # FR
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+33 (0)6 {d(2)} {d(2)} {d(2)} {d(2)}", f"+33 7 {d(2)} {d(2)} {d(2)} {d(2)}", f"+336{d(8)}",
        f"+33 4.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
        # IN
        f"+91 9{d(4)} {d(5)}", f"+91-22-{d(4)}-{d(4)}", f"+91 80 {d(4)} {d(4)}", f"+919{d(9)}",
        # BR
        f"+55 11 9{d(4)}-{d(4)}", f"+55 (11) 3{d(3)}-{d(4)}", f"+55 21 2{d(3)} {d(4)}", f"+55119{d(8)}",
        # JP
        f"+81 3-{d(4)}-{d(4)}", f"+81 90-{d(4)}-{d(4)}", f"+81 (0)3 {d(4)} {d(4)}", f"+81 6 {d(4)} {d(4)}", f"+8180{d(8)}",
        # AU
        f"+61 2 9{d(3)} {d(4)}", f"+61 412 {d(3)} {d(3)}", f"+61 (0)2 9{d(3)} {d(4)}", f"+61 3 {d(4)} {d(4)}", f"+614{d(8)}",
    ]  # fmt: skip
    return rng.choice(forms)


def phone_national(rng: R) -> str:
    """National formats (trunk 0) as the numbering plans group them: only placed after a phone key."""
    d = lambda n: r(rng, DIGITS, n)  # noqa: E731
    return rng.choice([f"020 7{d(3)} {d(4)}", f"07700 9{d(5)}", f"030 {d(8)}", f"0151 {d(8)}", f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
                       f"01.{d(2)}.{d(2)}.{d(2)}.{d(2)}", f"03-{d(4)}-{d(4)}", f"090-{d(4)}-{d(4)}", f"(02) 9{d(3)} {d(4)}",
                       f"0412 {d(3)} {d(3)}", f"(11) 9{d(4)}-{d(4)}", f"022 {d(4)} {d(4)}"])  # fmt: skip


def phone(rng: R) -> str:
    return phone_nanp(rng) if rng.random() < 0.45 else phone_intl(rng)


def e164(rng: R) -> str:
    d = lambda n: r(rng, DIGITS, n)  # noqa: E731
    a, e, n = nanp_parts(rng)
    return rng.choice([f"+1{a}{e}{n}", f"+447{d(9)}", f"+4915{d(9)}", f"+336{d(8)}", f"+919{d(9)}", f"+55119{d(8)}",
                       f"+8190{d(8)}", f"+614{d(8)}", f"+3469{d(7)}", f"+2348{d(9)}"])  # fmt: skip


EXTENSIONS = [" x{}", " ext. {}", " ext {}", " x{}", ";ext={}", " #{}"]


# ---------------------------------------------------------------- cards, SSNs, IBANs


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        v = int(ch)
        if i % 2:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return total % 10 == 0


def luhn_complete(rng: R, prefix: str, length: int) -> str:
    body = prefix + r(rng, DIGITS, length - len(prefix) - 1)
    return next(body + c for c in DIGITS if luhn_ok(body + c))


def pan_digits(rng: R) -> str:
    prefix, n = rng.choice([("4", 16), ("4", 16), ("4", 16), (f"5{rng.randrange(1, 6)}", 16), (str(rng.randrange(2221, 2721)), 16),
                            (rng.choice(["34", "37"]), 15), ("6011", 16), ("65", 16), (str(rng.randrange(3528, 3590)), 16),
                            (rng.choice(["36", "38"]), 14), ("4", 19), ("62", 16)])  # fmt: skip
    return luhn_complete(rng, prefix, n)


def group_pan(digits: str, sep: str) -> str:
    if len(digits) in (14, 15):
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def pan(rng: R, seps: str = "  -") -> str:
    d = pan_digits(rng)
    sep = rng.choice(["", "", *list(seps)])
    return group_pan(d, sep) if sep else d


def masked_pan(rng: R) -> str:
    d = pan_digits(rng)
    return rng.choice([f"{d[:6]}{'*' * (len(d) - 10)}{d[-4:]}", f"{d[:6]}XXXXXX{d[-4:]}", f"************{d[-4:]}",
                       f"XXXX-XXXX-XXXX-{d[-4:]}", f"{d[:4]} {d[4:6]}** **** {d[-4:]}", f"{d[:4]}********{d[-4:]}",
                       f"**** **** **** {d[-4:]}", f"{d[:6]}######{d[-4:]}"])  # fmt: skip


def luhn_bad(rng: R) -> str:
    while True:
        d = rng.choice("3456") + r(rng, DIGITS, 15)
        if not luhn_ok(d):
            return d


def ssn_parts(rng: R) -> tuple[str, str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}", f"{rng.randrange(1, 100):02d}", f"{rng.randrange(1, 10000):04d}"


def ssn_dashed(rng: R) -> str:
    return "-".join(ssn_parts(rng))


IBAN_BBAN: dict[str, Callable[[R], str]] = {
    "DE": lambda g: r(g, DIGITS, 18),
    "GB": lambda g: r(g, UPPER, 4) + r(g, DIGITS, 14),
    "FR": lambda g: r(g, DIGITS, 23),
    "NL": lambda g: r(g, UPPER, 4) + r(g, DIGITS, 10),
    "ES": lambda g: r(g, DIGITS, 20),
    "IT": lambda g: r(g, UPPER, 1) + r(g, DIGITS, 10) + r(g, DIGITS + UPPER, 12),
    "BE": lambda g: r(g, DIGITS, 12),
    "AT": lambda g: r(g, DIGITS, 16),
    "CH": lambda g: r(g, DIGITS, 17),
    "PL": lambda g: r(g, DIGITS, 24),
    "SE": lambda g: r(g, DIGITS, 20),
    "IE": lambda g: r(g, UPPER, 4) + r(g, DIGITS, 14),
    "PT": lambda g: r(g, DIGITS, 21),
    "FI": lambda g: r(g, DIGITS, 14),
    "LU": lambda g: r(g, DIGITS, 3) + r(g, DIGITS + UPPER, 13),
    "DK": lambda g: r(g, DIGITS, 14),
}


def _mod97(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s)) % 97


def iban_compact(rng: R, country: str | None = None) -> str:
    cc = country or rng.choice(list(IBAN_BBAN))
    bban = IBAN_BBAN[cc](rng)
    check = 98 - _mod97(bban + cc + "00")
    return f"{cc}{check:02d}{bban}"


def iban(rng: R) -> str:
    v = iban_compact(rng)
    return " ".join(v[i : i + 4] for i in range(0, len(v), 4)) if rng.random() < 0.3 else v


def iban_bad(rng: R) -> str:
    """A German IBAN shape whose check digits are wrong (still in 02-98)."""
    v = iban_compact(rng, "DE")
    wrong = rng.choice([c for c in range(2, 99) if c != int(v[2:4])])
    return f"{v[:2]}{wrong:02d}{v[4:]}"


def creditor_id(rng: R) -> str:
    """SEPA creditor identifier: DEkkZZZ + 11 digits (its check digits skip the business code)."""
    nat = "0" + r(rng, DIGITS, 10)
    check = 98 - _mod97(nat + "DE00")
    return f"DE{check:02d}ZZZ{nat}"


def bic(rng: R) -> str:
    return rng.choice(
        ["COBADEFFXXX", "DEUTDEFF", "BNPAFRPP", "NWBKGB2L", "INGBNL2A", "UBSWCHZH80A", "BARCGB22", "CHASUS33"]
    )


# ---------------------------------------------------------------- addresses


def ipv4(rng: R) -> str:
    kind = rng.random()
    if kind < 0.3:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind < 0.4:
        return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind < 0.5:
        return f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind < 0.65:
        return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randrange(1, 255)}"
    while True:
        a = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        if a.is_global:
            return str(a)


def ipv6(rng: R) -> str:
    def groups(n: int) -> list[str]:
        return [format(rng.randrange(1 << 16), "x") for _ in range(n)]

    kind = rng.randrange(8)
    if kind == 0:
        return str(ipaddress.IPv6Address(rng.getrandbits(128) | (0x2001 << 112))).replace("2001:", "2a00:", 1)
    if kind == 1:  # full, zero-padded
        return ":".join(format(int(g, 16), "04x") for g in ["2001", "db8", *groups(6)])
    if kind == 2:
        return "2001:db8:" + ":".join(groups(2)) + "::" + groups(1)[0]
    if kind == 3:
        return "fe80::" + ":".join(groups(4))
    if kind == 4:
        return ("2606:4700:" + ":".join(groups(3)) + "::" + groups(1)[0]).upper()
    if kind == 5:
        return "2001:db8::" + groups(1)[0]
    if kind == 6:
        return "fd" + format(rng.randrange(256), "02x") + ":" + ":".join(groups(3)) + "::" + groups(1)[0]
    return "2a02:" + ":".join(groups(7))


def ipv6_any(rng: R) -> tuple[str, str]:
    """An IPv6 address in a rarer notation: (text, notation)."""
    v4 = ipv4(rng)
    kind = rng.randrange(5)
    if kind == 0:
        return f"::ffff:{v4}", "mapped"
    if kind == 1:
        return f"64:ff9b::{v4}", "nat64"
    if kind == 2:
        return (
            f"fe80::{format(rng.randrange(1 << 16), 'x')}:{format(rng.randrange(1 << 16), 'x')}:fe{format(rng.randrange(256), '02x')}:{format(rng.randrange(1 << 16), 'x')}%{rng.choice(['eth0', 'en0', 'ens192', '12', 'wlan0'])}",
            "zone",
        )
    if kind == 3:
        return f"::FFFF:{v4}", "mapped"
    return ipv6(rng), "plain"


def arpa6(rng: R) -> str:
    addr = ipaddress.IPv6Address(
        ipv6(rng) if rng.random() < 0.5 else "2001:db8::" + format(rng.randrange(1 << 16), "x")
    )
    return ".".join(reversed(addr.exploded.replace(":", "")))


def mac(rng: R) -> str:
    b = [rng.randrange(256) for _ in range(6)]
    kind = rng.randrange(4)
    if kind == 0:
        return ":".join(f"{x:02x}" for x in b)
    if kind == 1:
        return "-".join(f"{x:02X}" for x in b)
    if kind == 2:
        h = "".join(f"{x:02x}" for x in b)
        return f"{h[:4]}.{h[4:8]}.{h[8:]}"
    return ":".join(f"{x:02X}" for x in b)


def uuid4(rng: R) -> str:
    h = r(rng, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def version(rng: R) -> str:
    return f"{rng.randrange(1, 30)}.{rng.randrange(10)}.{rng.randrange(20)}.{rng.randrange(1, 300)}"


def oid(rng: R) -> str:
    return rng.choice(["1.3.6.1.4.1.", "1.3.6.1.2.1.", ".1.3.6.1.4.1.", "1.3.6.1.6.3.1.1.4."]) + ".".join(
        str(rng.randrange(1, 40)) for _ in range(rng.randrange(3, 7))
    )


def ts_iso(rng: R) -> str:
    return f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z"


def ts_syslog(rng: R) -> str:
    return f"{rng.choice(['Jan', 'Mar', 'Jun', 'Sep', 'Nov'])} {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


def epoch(rng: R) -> str:
    return str(rng.randrange(1_700_000_000, 1_800_000_000))


def ups(rng: R) -> str:
    return "1Z" + r(rng, UPPER + DIGITS, 6) + r(rng, DIGITS, 10)


def ean13(rng: R) -> str:
    body = rng.choice(["400", "401", "500", "590", "890", "978"]) + r(rng, DIGITS, 9)
    s = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
    return body + str((10 - s % 10) % 10)


def gtin14(rng: R) -> str:
    body = "000" + r(rng, DIGITS, 10)
    s = sum(int(c) * (1 if i % 2 else 3) for i, c in enumerate(body))
    return body + str((10 - s % 10) % 10)


def isbn13(rng: R) -> str:
    body = "978" + r(rng, DIGITS, 9)
    s = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
    d = body + str((10 - s % 10) % 10)
    return f"{d[:3]}-{d[3]}-{d[4:7]}-{d[7:12]}-{d[12]}"


def kv_sep(rng: R) -> str:
    return rng.choice(["=", ": ", "="])


# ---------------------------------------------------------------- families

LOG = ["INFO", "WARN", "ERROR", "DEBUG"]


def f_helpdesk(rng: R) -> Sample:
    first, last = person(rng)
    em, ph = email_for(rng, first, last), phone(rng)
    tid = nz(rng, 7)
    kind = rng.randrange(6)
    if kind == 0:
        return mk(ts_iso(rng), f" {rng.choice(LOG)} helpdesk ticket ", (f"#{tid}", "~ticket"), f" opened by {first} {last} <", (em, "email"),
                  "> phone=", (ph, "phone"), f" channel={rng.choice(['web', 'email', 'chat'])} sla=", (f"{rng.randrange(1, 72)}h", "~duration"))  # fmt: skip
    if kind == 1:  # Zendesk/Freshdesk-like JSON
        return mk('{"ticket_id":', (tid, "~ticket"), f',"requester":{{"name":"{first} {last}","email":"', (em, "email"), '","phone":"',
                  (ph, "phone"), '"},"created_at":"', (ts_iso(rng), "~timestamp"), '","tags":["billing","vip"],"via":{"channel":"voice","source":{"from":{"phone":"',
                  (e164(rng), "phone"), '"}}}}')  # fmt: skip
    if kind == 2:  # CRM CSV export row
        return mk((nz(rng, 6), "~record_id"), f',"{last}, {first}",', (em, "email"), ",", (ph, "phone"), ",",
                  (f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}", "~date"), f",{rng.choice(['Lead', 'Customer', 'Churned'])},",
                  (str(rng.randrange(100, 99999)), "~amount"))  # fmt: skip
    if kind == 3:  # agent note, national phone after a key, extension outside the span
        ext = rng.choice(EXTENSIONS).format(rng.randrange(10, 9999))
        return mk("[crm] contact updated id=", (f"CUS-{nz(rng, 8)}", "~record_id"), f" name=\"{first} {last}\" work_phone=", (phone(rng), "phone"),
                  ext, " mobile=", (phone_national(rng), "phone"), " email=", (em, "email"))  # fmt: skip
    if kind == 4:  # prose
        return mk(f"Customer {first} {last} called from ", (phone(rng), "phone"), " about order ", (f"ORD-2026-{nz(rng, 6)}", "~order"),
                  "; asked us to use ", (em, "email"), " instead of ", (email(rng), "email"), " for invoices.")  # fmt: skip
    # Salesforce-ish debug
    return mk(f"{ts_iso(rng)} DEBUG|USER_DEBUG|[42]|Contact:{{Id=", ("003" + r(rng, ALNUM, 15), "~sf_id"), f", FirstName={first}, LastName={last}, Email=",
              (em, "email"), ", Phone=", (phone(rng), "phone"), ", MobilePhone=", (e164(rng), "phone"), "}")  # fmt: skip


def f_order(rng: R) -> Sample:
    em = email(rng)
    kind = rng.randrange(4)
    if kind == 0:
        return mk(ts_iso(rng), " order.created order_id=", (f"ORD-2026-{nz(rng, 6)}", "~order"), " customer_email=", (em, "email"),
                  f" amount={rng.randrange(5, 900)}.{rng.randrange(100):02d} currency=EUR card=", (masked_pan(rng), "~masked_card"),
                  " tracking=", (ups(rng), "~tracking"), " invoice=", (f"INV-{nz(rng, 6)}", "~invoice"))  # fmt: skip
    if kind == 1:
        return mk('{"event":"checkout.completed","order":{"number":"', (nz(rng, 9), "~order"), '","email":"', (em, "email"), '","billing_phone":"',
                  (phone(rng), "phone"), '","payment":{"brand":"visa","last4":"', (r(rng, DIGITS, 4), "~last4"), '","bin":"', (nz(rng, 6), "~bin"),
                  '","masked":"', (masked_pan(rng), "~masked_card"), '"},"items":[{"sku":"SKU-', (r(rng, DIGITS, 6), "~sku"), '","gtin":"',
                  (gtin14(rng), "~gtin"), '"}]}}')  # fmt: skip
    if kind == 2:
        return mk(f"{ts_syslog(rng)} shop[{rng.randrange(100, 9999)}]: shipped order ", (f"#{nz(rng, 7)}", "~ticket"), " to ", (em, "email"),
                  " via UPS ", (ups(rng), "~tracking"), " ean=", (ean13(rng), "~ean"), " isbn ", (isbn13(rng), "~isbn"))  # fmt: skip
    return mk("refund processed ref=", (luhn_bad(rng), "~luhn_invalid"), " order=", (f"ORD-{nz(rng, 8)}", "~order"), " card ",
              (masked_pan(rng), "~masked_card"), " contact ", (em, "email"), " / ", (phone(rng), "phone"))  # fmt: skip


def f_gateway(rng: R) -> Sample:
    p = pan(rng)
    kind = rng.randrange(9)
    if kind == 0:
        return mk(f"{ts_iso(rng)} gateway authorize merchant=M{nz(rng, 7)} pan=", (pan_digits(rng), "credit_card"), f" exp={rng.randrange(1, 13):02d}/{rng.randrange(27, 32)} amount=",
                  (f"{rng.randrange(1, 999)}.{rng.randrange(100):02d}", "~amount"), " rrn=", (nz(rng, 12), "~rrn"), " stan=", (r(rng, DIGITS, 6), "~stan"))  # fmt: skip
    if kind == 1:
        return mk('{"card_number": "', (p, "credit_card"), f'", "expiry": "{rng.randrange(1, 13):02d}/{rng.randrange(27, 32)}", "holder": "{" ".join(person(rng))}", "masked": "',
                  (masked_pan(rng), "~masked_card"), '"}')  # fmt: skip
    if kind == 2:
        return mk("POST /legacy/charge.php ccnum=", (pan_digits(rng), "credit_card"), "&ccexp=1228&email=", (email(rng).replace("@", "%40"), "email"),
                  f" 200 {rng.randrange(100, 5000)}")  # fmt: skip
    if kind == 3:
        return mk("<PaymentRequest><PAN>", (pan_digits(rng), "credit_card"), "</PAN><ExpDate>2812</ExpDate><Amount>", (r(rng, DIGITS, 5), "~amount"),
                  "</Amount><MerchantRef>", (f"ORD-{nz(rng, 8)}", "~order"), "</MerchantRef><MaskedPAN>", (masked_pan(rng), "~masked_card"), "</MaskedPAN></PaymentRequest>")  # fmt: skip
    if kind == 4:  # ISO 8583 field dump
        d = pan_digits(rng)
        return mk("iso8583 MTI=0200 DE002=", (d, "credit_card"), " DE003=000000 DE004=", (r(rng, DIGITS, 12), "~amount"),
                  " DE007=", (f"{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{r(rng, DIGITS, 6)}", "~timestamp"), " DE011=", (r(rng, DIGITS, 6), "~stan"),
                  " DE037=", (nz(rng, 12), "~rrn"), " DE041=TERM", (r(rng, DIGITS, 4), "~terminal"), " DE049=978")  # fmt: skip
    if kind == 5:
        d = pan_digits(rng)
        return mk("[ISO8583] <field id=\"2\" value=\"", (d, "credit_card"), "\"/> <field id=\"4\" value=\"", (r(rng, DIGITS, 12), "~amount"),
                  "\"/> <field id=\"11\" value=\"", (r(rng, DIGITS, 6), "~stan"), "\"/> <field id=\"35\" value=\"", (d, "credit_card"), "=2812101",
                  (r(rng, DIGITS, 5), "~track_discretionary"), "\"/>")  # fmt: skip
    if kind == 6:  # card in a URL path / query
        return mk("GET /api/v1/cards/", (pan_digits(rng), "credit_card"), "/verify?cvc_check=1&card=", (p.replace(" ", "%20"), "credit_card"),
                  " HTTP/1.1\" 200 ", (nz(rng, rng.choice([3, 4, 10])), "~bytes"))  # fmt: skip
    if kind == 7:
        return mk("PaymentMethod(type=card, cardNumber=", (p, "credit_card"), ", last4=", (r(rng, DIGITS, 4), "~last4"), ", fingerprint=",
                  (r(rng, ALNUM, 16), "~fingerprint"), ")")  # fmt: skip
    return mk("declined: Luhn check failed for ", (luhn_bad(rng), "~luhn_invalid"), " (ref ", (f"INV-{nz(rng, 6)}", "~invoice"), "), retry with ",
              (masked_pan(rng), "~masked_card"))  # fmt: skip


def f_sepa(rng: R) -> Sample:
    first, last = person(rng)
    kind = rng.randrange(4)
    if kind == 0:
        return mk("<CdtTrfTxInf><PmtId><EndToEndId>", (f"E2E-{nz(rng, 10)}", "~e2e_id"), "</EndToEndId></PmtId><Amt><InstdAmt Ccy=\"EUR\">",
                  (f"{rng.randrange(1, 99999)}.{rng.randrange(100):02d}", "~amount"), f"</InstdAmt></Amt><CdtrAgt><FinInstnId><BIC>{bic(rng)}</BIC></FinInstnId></CdtrAgt><Cdtr><Nm>{first} {last}</Nm></Cdtr><CdtrAcct><Id><IBAN>",
                  (iban_compact(rng), "iban"), "</IBAN></Id></CdtrAcct></CdtTrfTxInf>")  # fmt: skip
    if kind == 1:
        return mk("<GrpHdr><MsgId>", (f"MSG{nz(rng, 12)}", "~msg_id"), "</MsgId><CreDtTm>", (ts_iso(rng)[:19], "~timestamp"), "</CreDtTm><NbOfTxs>3</NbOfTxs></GrpHdr><DbtrAcct><Id><IBAN>",
                  (iban_compact(rng), "iban"), "</IBAN></Id></DbtrAcct><CdtrSchmeId><Id><PrvtId><Othr><Id>", (creditor_id(rng), "~creditor_id"), "</Id></Othr></PrvtId></Id></CdtrSchmeId>")  # fmt: skip
    if kind == 2:  # MT940 statement, several physical lines
        b = bic(rng)
        return mk(":20:STARTUMS\n:25:", rng.choice([f"{b}/", ""]), (iban_compact(rng, "DE"), "iban"), "\n:28C:", (f"{rng.randrange(1, 400):05d}/001", "~statement_no"),
                  "\n:60F:C261128EUR", (f"{rng.randrange(100, 99999)},{rng.randrange(100):02d}", "~amount"), "\n:61:2611291129D", (f"{rng.randrange(1, 9999)},00", "~amount"),
                  "NTRFNONREF//", (nz(rng, 10), "~bank_ref"), "\n:86:166?00SEPA-UEBERWEISUNG?20EREF+", (f"E2E{nz(rng, 8)}", "~e2e_id"), f"?30{b}?31",
                  (iban_compact(rng), "iban"), f"?32{last.upper()} {first.upper()}")  # fmt: skip
    return mk(f"payout.failed beneficiary=\"{first} {last}\" iban=", (iban(rng), "iban"), " reason=AC04 mandate=", (f"MNDT-{nz(rng, 8)}", "~mandate"),
              " lookalike=", (iban_bad(rng), "~iban_invalid"))  # fmt: skip


def f_payroll(rng: R) -> Sample:
    first, last = person(rng)
    a, g, s = ssn_parts(rng)
    kind = rng.randrange(6)
    emp = f"E{nz(rng, 5)}"
    if kind == 0:  # CSV row
        return mk((emp, "~employee_id"), f",{first},{last},", (f"{a}-{g}-{s}", "ssn"), ",", (f"19{rng.randrange(50, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}", "~date"),
                  f",{rng.randrange(40, 250)}000.00,", (email_for(rng, first, last), "email"))  # fmt: skip
    if kind == 1:
        return mk(f"payroll: employee {emp} SSN: ", (f"{a} {g} {s}", "ssn"), f" net={rng.randrange(1000, 9000)}.{rng.randrange(100):02d} period=2026-11")  # fmt: skip
    if kind == 2:
        key = rng.choice(["ssn", "SSN", "social_security_number", "SSN_Number", "employee_ssn", "SocialSecurityNumber"])
        return mk('{"employee_id":"', (emp, "~employee_id"), f'","{key}":"', (f"{a}{g}{s}", "ssn"), '","hire_date":"', (f"20{rng.randrange(10, 26)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 9)}", "~date"),
                  '","phone":"', (phone(rng), "phone"), '"}')  # fmt: skip
    if kind == 3:
        return mk(f"W-2 generated for {first} {last} (TIN ", (f"{a}-{g}-{s}", "ssn"), ") batch=", (f"B{nz(rng, 9)}", "~batch"), " ein=",
                  (f"{rng.randrange(10, 99)}-{nz(rng, 7)}", "~ein"))  # fmt: skip
    if kind == 4:
        return mk(f"{ts_syslog(rng)} hr-sync: updated {emp} ssn=", (f"{a}{g}{s}", "ssn"), " dob=", (f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/19{rng.randrange(50, 99)}", "~date"),
                  " home_phone=", (phone_national(rng) if rng.random() < 0.3 else phone(rng), "phone"))  # fmt: skip
    return mk(f"I-9 verification {first} {last}: SSN ", (f"{a}-{g}-{s}", "ssn"), ", E-Verify case ", (f"2026{nz(rng, 9)}", "~case_no"), " closed")  # fmt: skip


def f_hl7(rng: R) -> Sample:
    first, last = person(rng)
    a, e, n = nanp_parts(rng)
    sa, sg, ss = ssn_parts(rng)
    nl = rng.choice(["\n", "\\r"])
    kind = rng.randrange(3)
    msh: list[Frag] = [
        "MSH|^~\\&|EPIC|HOSP|LAB|HOSP|",
        (f"2026{r(rng, DIGITS, 10)}", "~timestamp"),
        "||ADT^A01|",
        (f"MSG{nz(rng, 7)}", "~msg_id"),
        "|P|2.5.1",
        nl,
    ]
    if kind == 0:
        return mk(*msh, "PID|1||", (nz(rng, 8), "~mrn"), f"^^^HOSP^MR||{last.upper()}^{first.upper()}^Q||", (f"19{rng.randrange(50, 99)}0{rng.randrange(1, 10)}1{rng.randrange(0, 9)}", "~date"),
                  "|F|||123 MAIN ST^^SPRINGFIELD^IL^62704||", (f"({a}){e}-{n}", "phone"), "|", (phone(rng), "phone"), "||S||", (f"ACCT{nz(rng, 6)}", "~account"),
                  "|", (f"{sa}-{sg}-{ss}", "ssn"), "|||")  # fmt: skip
    if kind == 1:  # XTN components and a bare PID-19
        return mk(*msh, "PID|1||", (nz(rng, 8), "~mrn"), f"^^^HOSP^MR||{last.upper()}^{first.upper()}||", (f"19{rng.randrange(50, 99)}1{rng.randrange(0, 3)}0{rng.randrange(1, 10)}", "~date"),
                  "|M|||1 ELM AVE^^BOSTON^MA^02118||^PRN^PH^^", (f"1^{a}^{e}{n}", "phone"), "~^NET^Internet^", (email_for(rng, first, last), "email"),
                  "||||||", (f"{sa}{sg}{ss}", "ssn"), "|")  # fmt: skip
    return mk(*msh, "NK1|1|", f"{last.upper()}^{rng.choice(FIRST).upper()}|SPO|1 ELM AVE^^BOSTON^MA^02118|", (phone(rng), "phone"), nl, "PV1|1|I|",
              ("W3^301^1", "~location"), "||||", (nz(rng, 6), "~provider_id"), f"^{rng.choice(LAST).upper()}^JOHN^^^DR|||||||||||", (f"V{nz(rng, 8)}", "~visit"))  # fmt: skip


def f_mail(rng: R) -> Sample:
    first, last = person(rng)
    kind = rng.randrange(5)
    if kind == 0:
        return mk(f'From: "{last}, {first}" <', (email_for(rng, first, last), "email"), ">\nTo: ", (email(rng), "email"), f", {rng.choice(FIRST)} {rng.choice(LAST)} <",
                  (email(rng), "email"), ">\nCc: ", (email(rng), "email"), "\nReply-To: <", (email(rng), "email"), ">\nMessage-ID: <",
                  (f"{r(rng, HEX, 16)}.{nz(rng, 6)}@mail.acme.io", "~message_id"), ">")  # fmt: skip
    if kind == 1:
        host = rng.choice(["mail.acme.io", "smtp.example.net", "mx1.bigcorp.com"])
        return mk(f"Received: from {host} ({host} [", (ipv4(rng), "ipv4"), "]) by mx.google.com with ESMTPS id ", (r(rng, ALNUM, 12), "~smtp_id"),
                  " for <", (email(rng), "email"), ">; ", ("Sun, 29 Nov 2026 12:50:41 -0800 (PST)", "~timestamp"))  # fmt: skip
    if kind == 2:
        return mk(f"{ts_syslog(rng)} mx1 postfix/smtp[{rng.randrange(1000, 99999)}]: ", (r(rng, HEX.upper(), 10), "~queue_id"), ": to=<", (email(rng), "email"),
                  ">, relay=mx.example.net[", (ipv4(rng), "ipv4"), "]:25, delay=", ("0.42", "~duration"), ", status=sent (250 2.0.0 OK)")  # fmt: skip
    if kind == 3:
        return mk('<a href="mailto:', (email(rng), "email"), '?subject=Order%20', (nz(rng, 7), "~order"), '">contact us</a> or call <a href="tel:', (e164(rng), "phone"), '">us</a>')  # fmt: skip
    return mk("List-Unsubscribe: <mailto:", (email(rng), "email"), "?subject=unsubscribe>, <https://news.acme.io/u/", (uuid4(rng), "~uuid"), ">\nReturn-Path: <",
              (email(rng), "email"), ">")  # fmt: skip


def f_sip(rng: R) -> Sample:
    first, _ = person(rng)
    kind = rng.randrange(4)
    call_id = f"{r(rng, HEX, 16)}@{rng.choice(['pbx.acme.io', 'pc33.example.net'])}"
    if kind == 0:
        return mk("INVITE sip:", (e164(rng), "phone"), "@pbx.acme.io;user=phone SIP/2.0\nVia: SIP/2.0/UDP ", (ipv4(rng), "ipv4"), ":5060;branch=",
                  ("z9hG4bK" + r(rng, HEX, 10), "~branch"), f"\nFrom: \"{first}\" <sip:", (email(rng), "email"), ">;tag=", (nz(rng, 10), "~tag"), "\nCall-ID: ",
                  (call_id, "~call_id"), "\nCSeq: 314159 INVITE")  # fmt: skip
    if kind == 1:
        return mk(f"{ts_iso(rng)} asterisk[{rng.randrange(1000, 9999)}]: NOTICE chan_sip.c: Registration from '<sip:", (e164(rng), "phone"), "@voip.acme.io>' failed for '",
                  (ipv4(rng), "ipv4"), ":", (str(rng.randrange(1024, 65535)), "~port"), "' - Wrong password")  # fmt: skip
    if kind == 2:
        a, e, n = nanp_parts(rng)
        return mk("P-Asserted-Identity: <tel:", (f"+1-{a}-{e}-{n}", "phone"), ">\nContact: <sip:", (e164(rng), "phone"), "@[", (ipv6(rng), "ipv6"), "]:5060;transport=tcp>")  # fmt: skip
    return mk("freeswitch CDR caller_id_number=", (e164(rng), "phone"), " destination_number=", (e164(rng), "phone"), " duration=", (str(rng.randrange(1, 3600)), "~duration"),
              " uuid=", (uuid4(rng), "~uuid"), " network_addr=", (ipv4(rng), "ipv4"))  # fmt: skip


def f_sms(rng: R) -> Sample:
    kind = rng.randrange(4)
    if kind == 0:
        return mk(f"{ts_iso(rng)} sms.send to=", (e164(rng), "phone"), " from=ACME sid=", ("SM" + r(rng, HEX, 32), "~message_sid"), " segments=",
                  (str(rng.randrange(1, 4)), "~count"), " status=queued")  # fmt: skip
    if kind == 1:
        return mk("DLR received msisdn=", (e164(rng)[1:], "phone"), " smsc_id=", (nz(rng, 8), "~smsc_id"), " stat=DELIVRD done_date=", (f"2611{r(rng, DIGITS, 6)}", "~timestamp"))  # fmt: skip
    if kind == 2:
        return mk('{"To":"', (e164(rng), "phone"), '","From":"', (e164(rng), "phone"), '","Body":"Your code is ', (r(rng, DIGITS, 6), "~otp"),
                  '","MessageSid":"', ("SM" + r(rng, HEX, 32), "~message_sid"), '","NumSegments":"1"}')  # fmt: skip
    return mk("otp: sent verification to ", (phone(rng), "phone"), " (attempt ", (str(rng.randrange(1, 5)), "~count"), "), request ", (uuid4(rng), "~uuid"))  # fmt: skip


def f_intl_phone(rng: R) -> Sample:
    ext = rng.choice(EXTENSIONS).format(rng.randrange(10, 9999))
    kind = rng.randrange(4)
    if kind == 0:
        return mk("contact: ", (phone_intl(rng), "phone"), ext, "; alt ", (phone_intl(rng), "phone"))
    if kind == 1:
        return mk(rng.choice(["phone", "tel", "mobile", "fax", "Telefon", "contact_number"]), kv_sep(rng), (phone_national(rng), "phone"), " (", (email(rng), "email"), ")")  # fmt: skip
    if kind == 2:
        return mk(
            f"{rng.choice(FIRST)} can be reached at ",
            (phone_nanp(rng), "phone"),
            ext,
            " or ",
            (phone_intl(rng), "phone"),
            ".",
        )
    return mk("vcard TEL;TYPE=cell:", (phone(rng), "phone"), "\nEMAIL;TYPE=work:", (email(rng), "email"))


def f_cisco(rng: R) -> Sample:
    kind = rng.randrange(6)
    conn = nz(rng, rng.randrange(5, 9))
    if kind == 0:
        return mk(f"{ts_syslog(rng)} fw01 %ASA-6-302013: Built outbound TCP connection ", (conn, "~conn_id"), " for outside:", (ipv4(rng), "ipv4"), "/443 (", (ipv4(rng), "ipv4"),
                  "/443) to inside:", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(1024, 65535)), "~port"), " (", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(1024, 65535)), "~port"), ")")  # fmt: skip
    if kind == 1:
        return mk("%ASA-4-106023: Deny tcp src outside:", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(1024, 65535)), "~port"), " dst inside:", (ipv4(rng), "ipv4"),
                  "/22 by access-group \"OUTSIDE_IN\" [", ("0x" + r(rng, HEX, 8), "~hex"), ", 0x0]")  # fmt: skip
    if kind == 2:
        return mk("%ASA-6-722051: Group <AnyConnect> User <", (email(rng), "email"), "> IP <", (ipv4(rng), "ipv4"), "> IPv4 Address <", (ipv4(rng), "ipv4"),
                  "> IPv6 address <", (ipv6(rng), "ipv6"), "> assigned to session")  # fmt: skip
    if kind == 3:
        return mk(f"*{ts_syslog(rng)}.{r(rng, DIGITS, 3)}: %SEC-6-IPACCESSLOGP: list 101 denied tcp ", (ipv4(rng), "ipv4"), "(", (str(rng.randrange(1024, 65535)), "~port"),
                  ") -> ", (ipv4(rng), "ipv4"), "(22), 1 packet")  # fmt: skip
    if kind == 4:
        return mk("%DHCPD-4-PING_CONFLICT: DHCP address conflict:  server pinged ", (ipv4(rng), "ipv4"), ". client ", (mac(rng), "~mac"), " on ",
                  ("GigabitEthernet1/0/24", "~interface"), " Cisco IOS Software, Version ", ("15.2(4)M7", "~version"), " sysObjectID ", (oid(rng), "~oid"))  # fmt: skip
    return mk("%BGP-5-ADJCHANGE: neighbor ", (ipv4(rng), "ipv4"), " Up  remote-as ", (f"AS{rng.randrange(1000, 400000)}", "~asn"), " firmware version ",
              (version(rng), "~version"), " uptime ", ("3d04h12m", "~duration"))  # fmt: skip


def f_juniper(rng: R) -> Sample:
    kind = rng.randrange(3)
    if kind == 0:
        return mk(f"{ts_syslog(rng)} srx1 RT_FLOW: RT_FLOW_SESSION_CREATE: session created ", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(1024, 65535)), "~port"),
                  "->", (ipv4(rng), "ipv4"), "/443 0x0 junos-https ", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(1024, 65535)), "~port"), "->", (ipv4(rng), "ipv4"),
                  "/443 0x0 N/A N/A N/A N/A 6 trust-to-untrust trust untrust ", (nz(rng, 9), "~session_id"))  # fmt: skip
    if kind == 1:
        return mk("<14>1 ", (ts_iso(rng), "~timestamp"), " srx1 RT_FLOW - RT_FLOW_SESSION_DENY [", ("junos@2636.1.1.1.2.40", "~sd_id"), ' source-address="', (ipv4(rng), "ipv4"),
                  '" source-port="', (str(rng.randrange(1024, 65535)), "~port"), '" destination-address="', (ipv6(rng), "ipv6"), '" destination-port="443" username="',
                  (email(rng), "email"), '"]')  # fmt: skip
    return mk("mgd[", (str(rng.randrange(1000, 99999)), "~pid"), "]: UI_LOGIN_EVENT: User 'netops' login, class 'j-super-user' [", (str(rng.randrange(1000, 99999)), "~pid"),
              "], ssh-connection '", (ipv4(rng), "ipv4"), " ", (str(rng.randrange(1024, 65535)), "~port"), " ", (ipv4(rng), "ipv4"), " 22', JUNOS ", ("21.4R3-S4.9", "~version"))  # fmt: skip


def f_firewall(rng: R) -> Sample:
    kind = rng.randrange(4)
    mac14 = ":".join(f"{rng.randrange(256):02x}" for _ in range(14))
    if kind == 0:
        return mk(f"{ts_syslog(rng)} gw kernel: [", (f"{rng.randrange(1, 99999)}.{r(rng, DIGITS, 6)}", "~uptime"), "] IPTABLES-DROP: IN=eth0 OUT= MAC=", (mac14, "~mac"),
                  " SRC=", (ipv4(rng), "ipv4"), " DST=", (ipv4(rng), "ipv4"), f" LEN=60 TOS=0x00 PREC=0x00 TTL={rng.randrange(30, 128)} ID=", (str(rng.randrange(1, 65535)), "~ip_id"),
                  " DF PROTO=TCP SPT=", (str(rng.randrange(1024, 65535)), "~port"), " DPT=22 WINDOW=29200 RES=0x00 SYN URGP=0")  # fmt: skip
    if kind == 1:
        return mk(f"{ts_syslog(rng)} gw kernel: nft-drop-in: IN=ens3 OUT= MAC=", (mac14, "~mac"), " SRC=", (ipv6(rng), "ipv6"), " DST=", (ipv6(rng), "ipv6"),
                  " LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=", (str(rng.randrange(1, 999999)), "~flow_label"), " PROTO=TCP SPT=", (str(rng.randrange(1024, 65535)), "~port"), " DPT=443")  # fmt: skip
    if kind == 2:  # pf / tcpdump: address.port
        return mk(f"{ts_syslog(rng)} fw pf: ", (f"00:00:0{rng.randrange(10)}.{r(rng, DIGITS, 6)}", "~timestamp"), " rule 12/0(match): block in on em0: ", (ipv4(rng), "ipv4"),
                  ".", (str(rng.randrange(1024, 65535)), "~port"), " > ", (ipv4(rng), "ipv4"), ".22: Flags [S], seq ", (nz(rng, 10), "~tcp_seq"), ", win 65535, length 0")  # fmt: skip
    return mk("ufw: [UFW BLOCK] IN=eth0 OUT= SRC=", (ipv4(rng), "ipv4"), " DST=", (ipv4(rng), "ipv4"), " PROTO=UDP SPT=53 DPT=", (str(rng.randrange(1024, 65535)), "~port"),
              " allowed ports ", ("22,80,443,8080-8090", "~port_list"))  # fmt: skip


def f_dns(rng: R) -> Sample:
    kind = rng.randrange(5)
    if kind == 0:
        return mk(f"{ts_syslog(rng)} ns1 named[{rng.randrange(100, 9999)}]: client @0x{r(rng, HEX, 12)} ", (ipv4(rng), "ipv4"), "#", (str(rng.randrange(1024, 65535)), "~port"),
                  " (www.acme.io): query: www.acme.io IN A +E(0)K (", (ipv4(rng), "ipv4"), ")")  # fmt: skip
    if kind == 1:
        octs = ipv4(rng).split(".")
        return mk(f"dnsmasq[{rng.randrange(100, 9999)}]: query[PTR] ", (".".join(reversed(octs)), "ipv4"), ".in-addr.arpa from ", (ipv4(rng), "ipv4"))  # fmt: skip
    if kind == 2:
        return mk(f"dnsmasq[{rng.randrange(100, 9999)}]: reply {rng.choice(['api', 'cdn', 'laptop-42'])}.acme.io is ", (ipv6(rng), "ipv6"), " ttl ", (str(rng.randrange(30, 86400)), "~ttl"))  # fmt: skip
    if kind == 3:
        return mk("query: ", (arpa6(rng), "ipv6"), ".ip6.arpa IN PTR + (", (ipv6(rng), "ipv6"), ")")
    return mk(f"unbound[{rng.randrange(100, 9999)}:0] info: ", (ipv4(rng), "ipv4"), " mail.acme.io. AAAA IN NOERROR ", ("0.000123", "~duration"), " 0 ", (str(rng.randrange(50, 500)), "~bytes"))  # fmt: skip


def f_dhcp(rng: R) -> Sample:
    kind = rng.randrange(3)
    m = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
    if kind == 0:
        return mk(f"{ts_syslog(rng)} dhcp1 dhcpd[{rng.randrange(100, 9999)}]: DHCPACK on ", (ipv4(rng), "ipv4"), " to ", (m, "~mac"), f" ({rng.choice(FIRST).lower()}-iphone) via eth0")  # fmt: skip
    if kind == 1:
        return mk("dhcpd: DHCPREQUEST for ", (ipv4(rng), "ipv4"), " (", (ipv4(rng), "ipv4"), ") from ", (m, "~mac"), " via ", (ipv4(rng), "ipv4"), ": lease ", (ipv4(rng), "ipv4"), " unavailable.")  # fmt: skip
    return mk("kea-dhcp6: DHCP6_LEASE_ALLOC [hwtype=1 ", (m, "~mac"), "], cid=[", (":".join(r(rng, HEX, 2) for _ in range(14)), "~duid"), "], tid=0x", (r(rng, HEX, 6), "~hex"),
              ": lease for address ", (ipv6(rng), "ipv6"), " and iaid=", (str(rng.randrange(1, 99999)), "~iaid"), " allocated to ", (ipv6_any(rng)[0], "ipv6"))  # fmt: skip


def f_vpc(rng: R) -> Sample:
    start = int(epoch(rng))
    return mk("2 ", (nz(rng, 12), "~account_id"), " eni-", (r(rng, HEX, 17), "~hex"), " ", (ipv4(rng), "ipv4"), " ", (ipv4(rng), "ipv4"), " ",
              (str(rng.randrange(1, 65535)), "~port"), " 443 6 ", (str(rng.randrange(1, 999)), "~count"), " ", (str(rng.randrange(40, 9_999_999)), "~bytes"), " ",
              (str(start), "~epoch"), " ", (str(start + 60), "~epoch"), rng.choice([" ACCEPT OK", " REJECT OK"]))  # fmt: skip


def f_access(rng: R) -> Sample:
    kind = rng.randrange(4)
    if kind == 0:  # ALB
        return mk("https ", (ts_iso(rng), "~timestamp"), " app/prod-alb/", (r(rng, HEX, 16), "~hex"), " ", (ipv4(rng), "ipv4"), ":", (str(rng.randrange(1024, 65535)), "~port"), " ",
                  (ipv4(rng), "ipv4"), ":8080 0.000 0.012 0.000 200 200 ", (str(rng.randrange(100, 999)), "~bytes"), " ", (str(rng.randrange(100, 99999)), "~bytes"),
                  ' "GET https://shop.acme.io:443/account?email=', (email(rng).replace("@", "%40"), "email"), ' HTTP/1.1" "Mozilla/5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:',
                  (nz(rng, 12), "~account_id"), ':targetgroup/web/', (r(rng, HEX, 16), "~hex"), ' "Root=1-', (r(rng, HEX, 8), "~hex"), "-", (r(rng, HEX, 24), "~trace_id"), '"')  # fmt: skip
    if kind == 1:  # CloudFront (tab separated, first fields)
        return mk(("2026-11-29", "~date"), "\t12:50:41\tLAX1-C1\t", (str(rng.randrange(100, 9_999_999)), "~bytes"), "\t", (ipv4(rng) if rng.random() < 0.6 else ipv6(rng), "ipv_any"),
                  "\tGET\td111111abcdef8.cloudfront.net\t/index.html\t200\t-\tMozilla/5.0%20(X11)\tuser=", (email(rng).replace("@", "%40"), "email"), "\t-\tHit")  # fmt: skip
    if kind == 2:  # nginx combined with a v6 client and XFF
        client = ipv6(rng)
        return mk((client, "ipv6"), " - - [29/Nov/2026:12:50:41 +0000] \"POST /api/orders HTTP/1.1\" 201 ", (nz(rng, 10), "~bytes"), ' "-" "okhttp/4.12.0" xff="', (ipv4(rng), "ipv4"),
                  ", ", (ipv4(rng), "ipv4"), '" rt=', ("0.215", "~duration"))  # fmt: skip
    return mk((ipv4(rng), "ipv4"), f" - {rng.choice(FIRST).lower()} [29/Nov/2026:12:50:41 +0100] \"GET /customers/search?phone=", (phone(rng).replace(" ", "%20").replace("+", "%2B"), "phone"),
              " HTTP/1.1\" 200 ", (nz(rng, rng.randrange(4, 11)), "~bytes"), ' "https://crm.acme.io/" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/', ("120.0.6099.109", "~version"), '"')  # fmt: skip


def f_ids(rng: R) -> Sample:
    kind = rng.randrange(4)
    flow_id = nz(rng, 16)
    if kind == 0:
        return mk('{"timestamp":"', (ts_iso(rng), "~timestamp"), '","flow_id":', (flow_id, "~flow_id"), ',"in_iface":"eth0","event_type":"alert","src_ip":"', (ipv4(rng), "ipv4"),
                  '","src_port":', (str(rng.randrange(1024, 65535)), "~port"), ',"dest_ip":"', (ipv4(rng), "ipv4"), '","dest_port":22,"proto":"TCP","alert":{"signature_id":',
                  (str(rng.randrange(2_000_000, 2_100_000)), "~sid"), ',"signature":"ET SCAN Potential SSH Scan","severity":2},"community_id":"1:', (r(rng, ALNUM, 27) + "=", "~community_id"), '"}')  # fmt: skip
    if kind == 1:
        return mk('{"event_type":"http","flow_id":', (flow_id, "~flow_id"), ',"src_ip":"', (ipv6(rng), "ipv6"), '","dest_ip":"', (ipv6_any(rng)[0], "ipv6"),
                  '","http":{"hostname":"shop.acme.io","url":"/login?user=', (email(rng), "email"), '","http_user_agent":"curl/', ("8.5.0", "~version"), '","status":200,"length":',
                  (str(rng.randrange(1, 99999)), "~bytes"), "}}")  # fmt: skip
    if kind == 2:  # Zeek conn.log TSV
        return mk((f"{epoch(rng)}.{r(rng, DIGITS, 6)}", "~epoch"), "\t", ("C" + r(rng, ALNUM, 17), "~zeek_uid"), "\t", (ipv4(rng), "ipv4"), "\t", (str(rng.randrange(1024, 65535)), "~port"),
                  "\t", (ipv4(rng), "ipv4"), "\t443\ttcp\tssl\t", ("0.123456", "~duration"), "\t", (str(rng.randrange(100, 99999)), "~bytes"), "\t", (str(rng.randrange(100, 99999)), "~bytes"), "\tSF")  # fmt: skip
    return mk('{"ts":', (f"{epoch(rng)}.{r(rng, DIGITS, 6)}", "~epoch"), ',"uid":"', ("C" + r(rng, ALNUM, 17), "~zeek_uid"), '","id.orig_h":"', (ipv6_any(rng)[0], "ipv6"),
              '","id.orig_p":', (str(rng.randrange(1024, 65535)), "~port"), ',"id.resp_h":"', (ipv4(rng), "ipv4"), '","id.resp_p":53,"query":"acme.io","answers":["', (ipv4(rng), "ipv4"),
              '","', (ipv6(rng), "ipv6"), '"],"TTLs":[300.0,300.0]}')  # fmt: skip


def f_windows(rng: R) -> Sample:
    first, last = person(rng)
    sid = f"S-1-5-21-{nz(rng, 10)}-{nz(rng, 10)}-{nz(rng, 9)}-{rng.randrange(1000, 9999)}"
    ip, _ = (ipv4(rng), "") if rng.random() < 0.6 else ipv6_any(rng)
    kind = "ipv4" if "." in ip and ":" not in ip else "ipv6"
    user = rng.choice([f"{first[0].lower()}{_ascii(last)}", email_for(rng, first, last)])
    user_frag: Frag = (user, "email") if "@" in user else user
    return mk('<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="Microsoft-Windows-Security-Auditing" Guid="{',
              (uuid4(rng), "~uuid"), '}"/><EventID>4625</EventID><TimeCreated SystemTime="', (ts_iso(rng), "~timestamp"), '"/><EventRecordID>', (nz(rng, 9), "~record_id"),
              '</EventRecordID><Computer>DC01.corp.acme.io</Computer></System><EventData><Data Name="TargetUserSid">', (sid, "~sid"), '</Data><Data Name="TargetUserName">',
              user_frag, '</Data><Data Name="TargetDomainName">CORP</Data><Data Name="LogonType">3</Data><Data Name="IpAddress">', (ip, kind), '</Data><Data Name="IpPort">',
              (str(rng.randrange(1024, 65535)), "~port"), '</Data><Data Name="LogonGuid">{', (uuid4(rng), "~uuid"), "}</Data></EventData></Event>")  # fmt: skip


def f_ldap(rng: R) -> Sample:
    first, last = person(rng)
    conn = str(rng.randrange(1000, 999999))
    kind = rng.randrange(3)
    if kind == 0:
        return mk(f"{ts_syslog(rng)} ldap1 slapd[{rng.randrange(100, 9999)}]: conn=", (conn, "~conn_id"), " fd=12 ACCEPT from IP=", (ipv4(rng), "ipv4"), ":",
                  (str(rng.randrange(1024, 65535)), "~port"), " (IP=", ("0.0.0.0", "~unspecified"), ":389)")  # fmt: skip
    if kind == 1:
        return mk("slapd: conn=", (conn, "~conn_id"), ' op=2 SRCH base="dc=acme,dc=io" scope=2 deref=0 filter="(|(mail=', (email_for(rng, first, last), "email"), ")(telephoneNumber=",
                  (phone(rng), "phone"), '))"')  # fmt: skip
    return mk(f"dn: CN={first} {last},OU=Staff,DC=corp,DC=acme,DC=io\nuserPrincipalName: ", (email_for(rng, first, last), "email"), "\ntelephoneNumber: ", (phone(rng), "phone"),
              "\nmobile: ", (e164(rng), "phone"), "\nobjectGUID: ", (uuid4(rng), "~uuid"), "\nwhenCreated: ", (f"2026{r(rng, DIGITS, 10)}.0Z", "~timestamp"), "\nuSNChanged: ", (nz(rng, 7), "~usn"))  # fmt: skip


def f_ipv6(rng: R) -> Sample:
    kind = rng.randrange(5)
    if kind == 0:
        return mk(
            "connect to [",
            (ipv6(rng), "ipv6"),
            "]:",
            (str(rng.randrange(1, 65535)), "~port"),
            " failed; retry via ",
            (ipv6_any(rng)[0], "ipv6"),
        )
    if kind == 1:
        v, _ = ipv6_any(rng)
        return mk("neighbor ", (v, "ipv6"), " lladdr ", (mac(rng), "~mac"), " REACHABLE")
    if kind == 2:
        return mk("route add ", (f"2001:db8:{format(rng.randrange(1 << 16), 'x')}::", "ipv6"), "/", ("48", "~prefix_len"), " via ", (ipv6(rng), "ipv6"), " dev eth0 metric ", (str(rng.randrange(1, 1024)), "~count"))  # fmt: skip
    if kind == 3:
        return mk("allow from ", (ipv4(rng), "ipv4"), "/", (str(rng.randrange(8, 33)), "~prefix_len"), ", ", (ipv4(rng), "ipv4"), "/32; deny ", ("127.0.0.1", "~loopback"), " and ", ("::1", "~loopback"))  # fmt: skip
    return mk(
        "peer=",
        (ipv6(rng).upper(), "ipv6"),
        " local=",
        (ipv4(rng), "ipv4"),
        ":",
        (str(rng.randrange(1024, 65535)), "~port"),
    )


def f_hostnames(rng: R) -> Sample:
    octs = ipv4(rng).split(".")
    dashed = "-".join(octs)
    kind = rng.randrange(4)
    if kind == 0:
        # EC2's private DNS name is the node's own host name, kept (as the other corpora keep it); its address is not
        return mk(f"{ts_syslog(rng)} ", (f"ip-{dashed}", "~ec2_hostname"), " kubelet[", (str(rng.randrange(100, 9999)), "~pid"), "]: node ",
                  (f"ip-{dashed}.ec2.internal", "~ec2_hostname"), " ready, InternalIP ", (".".join(octs), "ipv4"))  # fmt: skip
    if kind == 1:
        pub = ipv4(rng).split(".")
        return mk("resolved ec2-", ("-".join(pub), "ipv4"), ".compute-1.amazonaws.com to ", (".".join(pub), "ipv4"))
    if kind == 2:
        return mk(
            "webhook callback https://",
            (".".join(octs), "ipv4"),
            ".nip.io:8443/hook and https://",
            (dashed, "ipv4"),
            ".sslip.io/",
        )
    return mk("Received: from host-", (dashed, "ipv4"), ".static.isp.example.net ([", (".".join(octs), "ipv4"), "])")


def f_negative(rng: R) -> Sample:
    kind = rng.randrange(10)
    if kind == 0:
        return mk("snmptrapd: UDP: [", (ipv4(rng), "ipv4"), "]:162 SNMPv2-MIB::sysUpTime.0 = Timeticks: (", (nz(rng, 7), "~timeticks"), ") ", ("0:20:34.56", "~duration"),
                  " SNMPv2-MIB::snmpTrapOID.0 = OID: ", (oid(rng), "~oid"), " ", (oid(rng), "~oid"), " = INTEGER: 3")  # fmt: skip
    if kind == 1:
        return mk("agent version ", (version(rng), "~version"), " build v", (version(rng), "~version"), " released ", (f"{rng.randrange(1, 29):02d}.{rng.randrange(1, 13):02d}.2026", "~date"),
                  " kernel ", ("5.15.0-1051-aws", "~version"))  # fmt: skip
    if kind == 2:
        return mk("iface eth0 hwaddr ", (mac(rng), "~mac"), " peer ", (mac(rng), "~mac"), " bgp as ", (f"AS{rng.randrange(1000, 400000)}", "~asn"), " ports ", ("22,80,443,8443", "~port_list"))  # fmt: skip
    if kind == 3:
        return mk("nginx: 200 ", (nz(rng, 10), "~bytes"), " bytes in ", (f"{rng.randrange(1, 999)}ms", "~duration"), " at ", (epoch(rng), "~epoch"), " (", (epoch(rng) + r(rng, DIGITS, 3), "~epoch_ms"), ")")  # fmt: skip
    if kind == 4:
        return mk("ticket ", (f"#{nz(rng, 7)}", "~ticket"), " merged into ", (f"INC{r(rng, DIGITS, 7)}", "~ticket"), " tracking ", (ups(rng), "~tracking"), " isbn ", (isbn13(rng), "~isbn"),
                  " ean ", (ean13(rng), "~ean"))  # fmt: skip
    if kind == 5:
        return mk("card on file ", (masked_pan(rng), "~masked_card"), " and ", (masked_pan(rng), "~masked_card"), "; ref ", (luhn_bad(rng), "~luhn_invalid"), " txn ", (uuid4(rng), "~uuid"))  # fmt: skip
    if kind == 6:
        return mk('"GET /status HTTP/1.1" 200 ', (nz(rng, 10), "~bytes"), " request_id=", (r(rng, HEX, 32), "~hex"), " span=", (r(rng, HEX, 16), "~hex"), " dur=", ("12.5ms", "~duration"))  # fmt: skip
    if kind == 7:
        return mk("listening on ", ("127.0.0.1", "~loopback"), ":8080 and [", ("::1", "~loopback"), "]:8080, bind ", ("0.0.0.0", "~unspecified"), " cert serial ", (":".join(r(rng, HEX.upper(), 2) for _ in range(16)), "~cert_serial"))  # fmt: skip
    if kind == 8:
        return mk("ifInOctets.", (str(rng.randrange(1, 48)), "~ifindex"), " = Counter64: ", (nz(rng, 12), "~bytes"), " sysObjectID.0 = ", (oid(rng), "~oid"), " sysDescr firmware ",
                  (f"v{version(rng)}", "~version"))  # fmt: skip
    return mk("gtin=", (gtin14(rng), "~gtin"), " sku=", (f"SKU-{r(rng, DIGITS, 8)}", "~sku"), " part ", (f"PN-{r(rng, DIGITS, 3)}-{r(rng, DIGITS, 2)}-{r(rng, DIGITS, 4)}", "~part_no"),
              " invoice ", (f"INV-2026-{nz(rng, 6)}", "~invoice"))  # fmt: skip


FAMILIES: dict[str, Callable[[R], Sample]] = {
    "helpdesk": f_helpdesk, "order": f_order, "gateway": f_gateway, "sepa": f_sepa, "payroll": f_payroll, "hl7": f_hl7, "mail": f_mail,
    "sip": f_sip, "sms": f_sms, "intl_phone": f_intl_phone, "cisco": f_cisco, "juniper": f_juniper, "firewall": f_firewall, "dns": f_dns,
    "dhcp": f_dhcp, "vpc": f_vpc, "access": f_access, "ids": f_ids, "windows": f_windows, "ldap": f_ldap, "ipv6": f_ipv6,
    "hostnames": f_hostnames, "negative": f_negative,
}  # fmt: skip
WEIGHTS = {"helpdesk": 2, "gateway": 3, "negative": 3, "intl_phone": 2, "payroll": 2, "ipv6": 2}


def _normalise(sample: Sample) -> Sample:
    """`ipv_any` (an address in either family) gets the type of what it holds."""
    sample.positives = [
        (s, e, ("ipv6" if ":" in sample.line[s:e] else "ipv4") if k == "ipv_any" else k) for s, e, k in sample.positives
    ]
    return sample


def generate(seed: int = 7007, lines: int = 3000) -> list[Sample]:
    """`lines` labelled samples (one log record each; some span several physical lines)."""
    return [_normalise(sample) for sample in weighted_families(FAMILIES, WEIGHTS, seed, lines)]
