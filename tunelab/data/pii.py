"""Pattern recognizers for personal data, with checksums where the format has one.

Written here rather than taken from presidio-analyzer: presidio needs spaCy and a spaCy model that is not on
PyPI (it downloads one at run time), and its URL/e-mail recognizers fetch the public-suffix list from the
network. Phone numbers use Google's ``phonenumbers`` library as one of the acceptance routes.

``find(text, types)`` returns non-overlapping ``Span``s; when two recognizers claim the same characters the
one with the stronger evidence wins (checksummed formats first, then the more specific pattern).
Names (PERSON, ORGANIZATION, LOCATION) come from a tunelab NER run, see ``scrub``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

TYPES = (
    "EMAIL",
    "URL",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "PHONE",
    "DATE",
    "ADDRESS",
    "PERSON",
    "ORGANIZATION",
    "LOCATION",
)
NAME_TYPES = ("PERSON", "ORGANIZATION", "LOCATION")
NER_TYPES = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "LOC": "LOCATION",
    "LOCATION": "LOCATION",
    "GPE": "LOCATION",
}
PRIORITY = {
    t: k
    for k, t in enumerate(
        (
            "EMAIL",
            "URL",
            "IBAN",
            "CREDIT_CARD",
            "US_SSN",
            "IP_ADDRESS",
            "DATE",
            "ADDRESS",
            "PHONE",
            "PERSON",
            "ORGANIZATION",
            "LOCATION",
        )
    )
}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str
    text: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for k, ch in enumerate(reversed(digits)):
        d = int(ch)
        if k % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to 10..35, the number mod 97 is 1."""
    s = re.sub(r"\s", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    """US SSN rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    area, group, serial = re.split(r"[- ]", ssn)
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w@])")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD = re.compile(r"(?<![\d+-])(?:\d[ -]?){11,18}\d(?![\d-])")
# Visa, Mastercard/Maestro, Amex/Diners/JCB, Discover/Maestro/UnionPay, JCB's 15-digit 1800/2131 ranges
_CARD_PREFIX = re.compile(r"4|5[0-8]|2[2-7]|3[0-9]|6|1800|2131")
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")
_PHONE = re.compile(r"(?<![\w+])(?:\+|\(\d)?\d[\d \t().\-/]{5,}\d(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?(?!\w)")
_PHONE_CONTEXT = re.compile(
    r"(phone|tel\b|call|mobile|cell|fax|desk|office|contact|number|answering|reach|dial|text me|"
    r"whatsapp|registered|home|work)",
    re.IGNORECASE,
)
_NOT_PHONE_CONTEXT = re.compile(
    r"(licen[cs]e|passport|account|card|iban|ssn|social security|zip|postal|order|invoice)\W*"
    r"(?:\w+\W+){0,3}$",
    re.IGNORECASE,
)
_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?"
    "|nov(?:ember)?|dec(?:ember)?"
)
_DATE = re.compile(
    r"\b(?:\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?"  # 2000-04-16 11:34:35
    r"|(?<![\d.])\d{1,2}[/.]\d{1,2}[/.]\d{2,4}(?![./]?\d)"  # 7/14/1995, 14.07.1995
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\.?,?\s+\d{{4}}"  # 14 July 1995
    rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # July 14, 1995
    rf"|(?:{_MONTHS})\s+\d{{4}})\b",  # July 1995
    re.IGNORECASE,
)
_STREET = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|square|sq|terrace|"
    "parkway|pkwy|highway|hwy|circle|cir|trail|alley|crescent|close|gardens|row|walk"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?(?:[ \t]+[A-Z0-9][\w'.-]*){{1,4}}[ \t]+(?:{_STREET})\b\.?"
    r"(?:,?[ \t]+(?:apt\.?|suite|unit|#)[ \t]*\w+)?",
    re.IGNORECASE,
)


def _emails(text: str):
    for m in _EMAIL.finditer(text):
        yield m.start(), m.end(), "EMAIL"


def _urls(text: str):
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}":  # sentence punctuation is not part of the URL
            end -= 1
        yield m.start(), end, "URL"


def _ips(text: str):
    for m in _IPV4.finditer(text):
        if all(int(p) <= 255 for p in m.group().split(".")):
            yield m.start(), m.end(), "IP_ADDRESS"
    for m in _IPV6.finditer(text):
        if m.group().count(":") >= 2 and _is_ipv6(m.group()):
            yield m.start(), m.end(), "IP_ADDRESS"


def _is_ipv6(s: str) -> bool:
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return sum(c.isalnum() for c in s) >= 3


def _cards(text: str):
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 12 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits) and len(set(digits)) > 1:
            yield m.start(), m.end(), "CREDIT_CARD"


def _ibans(text: str):
    for m in _IBAN.finditer(text):
        parts = m.group().split(" ")
        for n in range(len(parts), 0, -1):  # the pattern may run into the next word ("GB82... to"): try shorter
            candidate = " ".join(parts[:n])
            if iban_ok(candidate):
                yield m.start(), m.start() + len(candidate), "IBAN"
                break


def _ssns(text: str):
    for m in _SSN.finditer(text):
        if ssn_ok(m.group()):
            yield m.start(), m.end(), "US_SSN"


def _phones(text: str):
    for m in _PHONE.finditer(text):
        s = m.group()
        end = m.end()
        while s and s[-1] in " \t.-/(":
            s, end = s[:-1], end - 1
        digits = re.sub(r"\D", "", s.split("x")[0].split("ext")[0])
        if not 7 <= len(digits) <= 15 or s.count("(") != s.count(")"):
            continue
        if _valid_date(s):
            continue
        if phone_like(s, text[max(0, m.start() - 40) : m.start()], text[end : end + 20]):
            yield m.start(), end, "PHONE"


def _valid_date(s: str) -> bool:
    """A dd.mm.yyyy or yyyy-mm-dd shaped run that is a real date (leave it to the date recognizer)."""
    m = re.fullmatch(r"(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})", s)
    if not m:
        return False
    a, b, c = (int(x) for x in m.groups())
    return (len(m.group(1)) == 4 and 1 <= b <= 12 and 1 <= c <= 31) or (
        1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12
    )


def phone_like(candidate: str, before: str, after: str = "") -> bool:
    """Accept a digit run as a phone number: international prefix or area code in parentheses, three or more
    digit groups, a phone word shortly before or after it, or a number ``phonenumbers`` calls valid in the US;
    never right after a word naming another identifier (licence, account, card ... number)."""
    import phonenumbers

    if _NOT_PHONE_CONTEXT.search(before):
        return False
    groups = len(re.findall(r"\d+", candidate.split("x")[0]))
    if (
        candidate.startswith(("+", "("))
        or groups >= 3
        or _PHONE_CONTEXT.search(before)
        or _PHONE_CONTEXT.match(after.strip(" -\t"))
    ):
        return True
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(candidate, "US"))
    except phonenumbers.NumberParseException:
        return False


def _dates(text: str):
    for m in _DATE.finditer(text):
        numeric = re.match(r"[\d./-]+", m.group()).group() if m.group()[0].isdigit() else ""
        if numeric.count(".") + numeric.count("/") + numeric.count("-") == 2 and not _valid_date(numeric.strip("./-")):
            continue
        yield m.start(), m.end(), "DATE"


def _addresses(text: str):
    for m in _ADDRESS.finditer(text):
        yield m.start(), m.end(), "ADDRESS"


RECOGNIZERS = {
    "EMAIL": _emails,
    "URL": _urls,
    "IP_ADDRESS": _ips,
    "CREDIT_CARD": _cards,
    "IBAN": _ibans,
    "US_SSN": _ssns,
    "PHONE": _phones,
    "DATE": _dates,
    "ADDRESS": _addresses,
}


def resolve(spans: list[tuple[int, int, str]], text: str) -> list[Span]:
    """Non-overlapping spans: by priority of type, then longer first; a span overlapping a kept one is dropped."""
    kept: list[tuple[int, int, str]] = []
    for s, e, t in sorted(spans, key=lambda x: (PRIORITY[x[2]], -(x[1] - x[0]), x[0])):
        if all(e <= ks or s >= ke for ks, ke, _ in kept):
            kept.append((s, e, t))
    return [Span(s, e, t, text[s:e]) for s, e, t in sorted(kept)]


def find(text: str, types: tuple[str, ...] = TYPES, extra: list[tuple[int, int, str]] = ()) -> list[Span]:
    """Personal data in ``text`` found by the pattern recognizers of ``types``, merged with ``extra`` spans (NER)."""
    found = [sp for t in types if t in RECOGNIZERS for sp in RECOGNIZERS[t](text)]
    return resolve(found + [x for x in extra if x[2] in types], text)
