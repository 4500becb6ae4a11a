"""PII recognizers: checksums by hand, spans in a mixed text, and non-matches."""

from tunelab.data import pii


def test_checksums():
    assert pii.luhn_ok("79927398713") and pii.luhn_ok("4111111111111111")
    assert not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32") and pii.iban_ok("gb82west12345698765432")
    assert not pii.iban_ok("GB82WEST12345698765433") and not pii.iban_ok("GB82")
    assert pii.ssn_ok("123-45-6789")
    assert not any(pii.ssn_ok(s) for s in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"))


def test_find_in_mixed_text():
    text = (
        "Mail jane.doe@example.org or call +1 (415) 555-0132. Card 4111 1111 1111 1111, IBAN GB82WEST12345698765432 to "
        "me, IP 192.168.0.1, SSN 123-45-6789, born 14 July 1995, see https://example.com/x. 12 Baker Street"
    )
    got = [(s.type, s.text) for s in pii.find(text)]
    assert got == [
        ("EMAIL", "jane.doe@example.org"),
        ("PHONE", "+1 (415) 555-0132"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("IBAN", "GB82WEST12345698765432"),
        ("IP_ADDRESS", "192.168.0.1"),
        ("US_SSN", "123-45-6789"),
        ("DATE", "14 July 1995"),
        ("URL", "https://example.com/x"),
        ("ADDRESS", "12 Baker Street"),
    ]
    assert all(text[s.start : s.end] == s.text for s in pii.find(text))


def test_non_matches():
    assert pii.find("Order 4111 1111 1111 1112 shipped") == []  # fails Luhn
    assert pii.find("version 999.1.1.1 and 1.2.3") == []  # not an IPv4 address
    assert pii.find("my driver's license number is 5130634") == []  # a number, but not a phone
    assert [s.type for s in pii.find("call me on 668 5702")] == ["PHONE"]
    assert [s.type for s in pii.find("Mobile: 03.93.92.16.85")] == ["PHONE"]  # not the date 03.93.92
    assert pii.find("email me", types=("PHONE",)) == []


def test_resolve_prefers_priority_then_length():
    spans = pii.resolve([(0, 10, "PHONE"), (0, 16, "CREDIT_CARD"), (20, 25, "PERSON"), (22, 30, "LOCATION")], "x" * 30)
    assert [(s.start, s.end, s.type) for s in spans] == [(0, 16, "CREDIT_CARD"), (20, 25, "PERSON")]
