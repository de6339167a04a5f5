#!/usr/bin/env python3
"""Writes tests/data/redaction/corpus.jsonl, the labelled corpus of the redaction tests.

Every sentence and every value below was written by hand for this corpus; the
script only pairs sentences with values, computes check digits where a value
must be valid (cards: Luhn; IBANs: mod 97) and breaks them where it must not,
and turns the inline labels into byte offsets. Labels are written
[[TYPE:value]] inside the text; the value is what must be replaced, exactly.

Output: one JSON object per line:
  {"text": ..., "spans": [{"type": "EMAIL", "start": 8, "end": 25}],
   "terms": [...]            (only for items that need user terms),
   "near_miss": "CARD"}      (only for near misses: looks like TYPE, is not)
Offsets are bytes of the UTF-8 text, end exclusive.

Usage: python3 scripts/gen_redaction_corpus.py > tests/data/redaction/corpus.jsonl
The output is deterministic.
"""
import json
import random
import re
import sys

LABEL = re.compile(r"\[\[([A-Z]+):(.*?)\]\]", re.S)


def item(marked, near_miss=None, terms=None):
    """Turns a labelled sentence into a corpus item."""
    text, spans, pos = b"", [], 0
    for m in LABEL.finditer(marked):
        text += marked[pos:m.start()].encode()
        value = m.group(2).encode()
        spans.append({"type": m.group(1), "start": len(text), "end": len(text) + len(value)})
        text += value
        pos = m.end()
    text += marked[pos:].encode()
    out = {"text": text.decode(), "spans": spans}
    if terms:
        out["terms"] = terms
    if near_miss:
        assert not spans, marked
        out["near_miss"] = near_miss
    return out


def pair(templates, values):
    """Each value once, with the templates in turn."""
    return [templates[i % len(templates)].format(v=v) for i, v in enumerate(values)]


# ------------------------------------------------------------------ checksums

def luhn_ok(number):
    digits = [int(c) for c in number if c.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def luhn_complete(prefix, length, rng):
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError


def group(number, sizes, sep):
    out, pos = [], 0
    for s in sizes:
        out.append(number[pos:pos + s])
        pos += s
    assert pos == len(number)
    return sep.join(out)


def iban_remainder(compact):
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97


def iban(country, bban):
    check = 98 - iban_remainder(country + "00" + bban)
    return f"{country}{check:02d}{bban}"


def iban_ok(value):
    return iban_remainder(value.replace(" ", "").upper()) == 1


def spaced(compact):
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


# ---------------------------------------------------------------------- email

EMAILS = [
    "jane.doe@example.com", "j.smith@example.org", "maria.garcia+newsletter@example.net",
    "o'neil@example.com", "support@acme-widgets.example", "k.mueller@firma-beispiel.de",
    "jean-luc.picard@example.fr", "li.wei@example.cn", "admin@mail.example.co.uk", "t_nguyen@example.com.au",
    "sales-team@example.io", "ana.souza@exemplo.com.br", "first.last@sub.domain.example.org",
    "noreply@notifications.example.com", "ceo@startup.example", "r2d2@droids.example.net",
    "helpdesk@universität-beispiel.de", "kontakt@bücher.example", "user123@example.travel",
    "priya.sharma@example.in", "x@example.com", "john.o.reilly@example.ie", "hr%payroll@example.com",
    "ops@xn--bcher-kva.example", "m.rossi@esempio.it", "sven.svensson@exempel.se", "a.b.c.d@example.museum",
    "bookings@hotel-example.com", "finance@example.org", "dr.evans@clinic.example.org",
]
EMAIL_TEMPLATES = [
    "Please reach me at [[EMAIL:{v}]] if anything changes.",
    "Best regards,\nJane\n[[EMAIL:{v}]]",
    "From: [[EMAIL:{v}]]\nSubject: Re: quarterly numbers",
    "Can you forward the contract to [[EMAIL:{v}]] before Friday?",
    "My email is [[EMAIL:{v}]].",
    "cc: <[[EMAIL:{v}]]>",
    "Write to ([[EMAIL:{v}]]) for access.",
    "\"email\": \"[[EMAIL:{v}]]\",",
]
EMAIL_MORE = [
    "Contact: [[EMAIL:anna.k@example.com]], [[EMAIL:b.lee@example.com]]; both are on leave until May.",
    "请联系[[EMAIL:wang.fang@example.cn]]获取详细信息。",
    "Schreiben Sie an [[EMAIL:info@beispiel-gmbh.de]] – wir antworten innerhalb von 24 Stunden.",
    "Mail [[EMAIL:team@example.org]]!",
    "Envoyez votre CV à « [[EMAIL:recrutement@exemple.fr]] ».",
]
EMAIL_NEAR = [
    "Use logo@2x.png for retina screens and logo.png elsewhere.",
    "Thanks @maria for the review, and @dev-team for the quick fix.",
    "Install it with npm install lodash@4.17.21 and restart.",
    "The container runs as root@localhost by default.",
    "Write to jane dot doe at example dot com (spelled out to avoid spam).",
    "In the decorator syntax @app.route('/users') maps the handler.",
    "Pin the action to actions/checkout@v4 in the workflow.",
    "The meeting is @ 3pm in room 4.",
    "The pattern user@ alone is not an address.",
    "See icon@3x.jpg in the assets folder.",
]

# ---------------------------------------------------------------------- phone

PHONES = [
    # US / NANP (555-0100 to 555-0199 are reserved for fiction)
    "(415) 555-0123", "212-555-0199", "312.555.0142", "+1 213 555 0178", "+1-202-555-0143", "1-800-555-0199",
    "+1 (415) 555-0123", "(212) 555-0187", "312-555-0110", "+1.617.555.0104", "650 555 0161", "(646) 555-0100",
    # UK (Ofcom drama ranges)
    "020 7946 0958", "+44 20 7946 0018", "+44 (0)20 7946 0321", "0161 496 0000", "07700 900123", "+44 7700 900456",
    "01632 960 123", "0113 496 0777", "+44 113 496 0500", "028 9649 6011",
    # Germany
    "030 12345678", "+49 30 12345678", "+49 (0)89 1234567", "089 1234567", "0151 23456789", "+49 151 23456789",
    "030/1234567", "0171-1234567", "+49 40 4285 1234", "0221 9876543",
    # France
    "01 23 45 67 89", "06 12 34 56 78", "+33 1 23 45 67 89", "+33 6 12 34 56 78", "06.12.34.56.78", "04-91-12-34-56",
    "+33 (0)1 42 68 53 00", "09 87 65 43 21",
    # elsewhere
    "+39 06 1234 5678", "+34 912 345 678", "+31 20 123 4567", "+61 2 9876 5432", "+81 3-1234-5678",
    "+91 98765 43210", "+55 11 91234-5678", "+41 44 668 18 00", "0049 30 1234567",
]
PHONE_TEMPLATES = [
    "Call me at [[PHONE:{v}]] after six.",
    "Tel: [[PHONE:{v}]]",
    "Mobile [[PHONE:{v}]] — text first please.",
    "You can reach the front desk on [[PHONE:{v}]] or by email.",
    "Her number is [[PHONE:{v}]], she prefers mornings.",
    "Kind regards,\nTom Baker\nSales Manager\nPhone: [[PHONE:{v}]]",
    "If the delivery is late, ring [[PHONE:{v}]].",
]
PHONE_MORE = [
    "Telefon: [[PHONE:0301234567]] (Zentrale)",
    "call [[PHONE:2025550143]] when you land",
    "Tél. [[PHONE:0612345678]]",
    "Numbers: [[PHONE:(415) 555-0111]] and [[PHONE:(415) 555-0112]].",
    "Fax [[PHONE:+49 30 1234569]]; Tel [[PHONE:+49 30 1234560]]",
]
PHONE_NEAR = [
    "The invoice is dated 12.03.2024 and due on 12.04.2024.",
    "Release 2024-03-12 fixed the crash introduced on 2024-02-28.",
    "We meet at 10:30:00 and leave at 14:45.",
    "Upgrade from 1.2.3 to 1.2.10 before the deadline.",
    "The total came to $1,299.00, tax included.",
    "Order 0123-456-789 shipped yesterday.",
    "ISBN 978-3-16-148410-0 is the second edition.",
    "Tracking no. 0012 3456 7890 arrived in Berlin.",
    "The ZIP code 90210-1234 belongs to Beverly Hills.",
    "Coordinates 48.8566, 2.3522 mark the centre of Paris.",
    "The population grew from 1 234 567 to 1 245 890 in ten years.",
    "Set the timeout to 30000 ms and the retries to 5.",
    "Ticket 0800-123-456 was closed as a duplicate.",
    "He scored 10 12 15 and 9 points in the four games.",
    "Case 2023/0457 was appealed in March.",
    "The serial number is 0043-7781-2290.",
    "Room 101, floor 12, building 3.",
    "The range 100-200-300 covers all models.",
    "Call it 555 times if you must.",
    "Version 10.0.19045.3803 is the current Windows build.",
    "Dates like 01/02/2024 and 1/2/2024 are ambiguous.",
    "The reading went from 0.5 to 0.75 to 1.0.",
    "Account ref 0044-1234-5678-90 is closed.",
    "Product code 0712-3456 is out of stock.",
    "The fiscal year 2023-2024 ended well.",
    "Item 2024.03.12.01 in the changelog.",
    "Pages 123-145 cover the proof.",
    "Budget: 12 000 000 EUR over 5 years.",
    "Error 0x80070005 means access denied.",
    "The flight leaves at 06.45 and lands at 09.10.",
    "Temperatures of -12 to -15 degrees are expected.",
    "Line 0042 of the log says 'disk full'.",
    "PO 0021 4567 8901 was approved.",
    "Meeting ID: 812 3456 7890 (no passcode).",
    "The barcode 4006381333931 is on the back.",
    "Build 20240312.1 passed all tests.",
    "Score: 3-2-1.",
    "The commit touched 1200 lines in 45 files.",
    "Lottery numbers 05 12 23 34 41 45 were drawn.",
    "Rated 4.5/5 by 12,345 users.",
]

# ----------------------------------------------------------------------- card

CARD_BRANDS = [  # (prefix, length, grouping)
    ("4", 16, (4, 4, 4, 4)), ("4", 16, (16,)), ("4", 13, (13,)), ("4", 19, (4, 4, 4, 4, 3)),
    ("51", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)), ("2720", 16, (16,)),
    ("34", 15, (4, 6, 5)), ("37", 15, (4, 6, 5)), ("37", 15, (15,)), ("6011", 16, (4, 4, 4, 4)),
    ("65", 16, (4, 4, 4, 4)), ("644", 16, (16,)), ("36", 14, (4, 6, 4)), ("300", 14, (14,)),
    ("3528", 16, (4, 4, 4, 4)), ("3589", 16, (16,)), ("62", 16, (4, 4, 4, 4)), ("62", 19, (19,)),
    ("6759", 16, (4, 4, 4, 4)), ("5018", 16, (16,)), ("2200", 16, (4, 4, 4, 4)), ("81", 16, (4, 4, 4, 4)),
]
CARD_FIXED = [  # well-known test numbers of the brands' documentation
    "4111 1111 1111 1111", "5555555555554444", "3782 822463 10005", "6011 1111 1111 1117",
    "3530 1113 3330 0000", "4012-8888-8888-1881", "5105 1051 0510 5100", "30569309025904",
    "4242 4242 4242 4242", "2223 0031 2200 3222", "6200 0000 0000 0005", "3714 496353 98431",
]
CARD_TEMPLATES = [
    "My card number is [[CARD:{v}]], expiry 04/27.",
    "Card: [[CARD:{v}]] CVV 123",
    "Please charge [[CARD:{v}]] for the deposit.",
    "card_number,expiry\n[[CARD:{v}]],12/27",
    "I paid with [[CARD:{v}]] but the order still shows as unpaid.",
    "Billing: Visa/MC [[CARD:{v}]] (exp 11/26)",
    "The card on file is [[CARD:{v}]]; please update it.",
    "{{\"pan\": \"[[CARD:{v}]]\"}}",
]
CARD_NEAR_TEMPLATES = [
    "Reference number {v} was assigned to your claim.",
    "The shipment id is {v}.",
    "Transaction {v} failed with code 51.",
    "Customer number: {v}",
    "Our records show {v} as the policy number.",
]

# ----------------------------------------------------------------------- IBAN

IBAN_BBANS = [
    ("DE", "370400440532013000"), ("DE", "500105175407324931"), ("GB", "NWBK60161331926819"),
    ("GB", "BARC20000055779911"), ("FR", "20041010050500013M02606"), ("FR", "30006000011234567890189"),
    ("ES", "21000418450200051332"), ("IT", "X0542811101000000123456"), ("NL", "ABNA0417164300"),
    ("NL", "INGB0001234567"), ("BE", "539007547034"), ("AT", "1904300234573201"), ("CH", "00762011623852957"),
    ("PL", "109010140000071219812874"), ("SE", "50000000058398257466"), ("DK", "00400440116243"),
    ("NO", "86011117947"), ("FI", "12345600000785"), ("IE", "AIBK93115212345678"), ("PT", "000201231234567890154"),
    ("LU", "0019400644750000"), ("CZ", "08000000192000145399"), ("HU", "117730161111101800000000"),
    ("RO", "AAAA1B31007593840000"), ("GR", "01101250000000012300695"), ("HR", "10010051863000160"),
    ("SA", "80000000608010167519"), ("AE", "0331234567890123456"), ("TR", "0006100519786457841326"),
    ("BR", "00360305000010009795493P1"), ("IL", "0108000000099999999"), ("MT", "MALT011000012345MTLCAST001S"),
]
IBAN_TEMPLATES = [
    "Please transfer the rent to [[IBAN:{v}]] by the 3rd.",
    "IBAN: [[IBAN:{v}]]\nBIC: DEUTDEFFXXX",
    "Bankverbindung: [[IBAN:{v}]] (Sparkasse)",
    "Le RIB est [[IBAN:{v}]], merci.",
    "Our account [[IBAN:{v}]] changed last month.",
    "\"iban\": \"[[IBAN:{v}]]\"",
]
IBAN_NEAR_TEMPLATES = [
    "The code {v} is printed on the form.",
    "Reference: {v}",
    "Batch {v} was rejected by the scanner.",
]

# ------------------------------------------------------------------------ SSN

SSNS = [
    "123-45-6789", "078-05-1120", "219-09-9999", "001-01-0001", "665-12-3456", "899-99-9999", "457-55-5462",
    "536-22-1234", "667-01-0100", "301-44-7890", "512-34-8765", "223-56-1122", "609-10-2020", "401-88-3344",
    "720-01-0001", "132-47-5566", "245-67-8899", "358-90-1122",
]
SSN_TEMPLATES = [
    "SSN: [[SSN:{v}]]",
    "My social security number is [[SSN:{v}]].",
    "Employee [[SSN:{v}]] — W-2 on file.",
    "Applicant SSN [[SSN:{v}]], DOB 04/12/1985",
    "ssn=[[SSN:{v}]]",
]
SSN_MORE = [
    "SSN [[SSN:123456780]] on the old form.",
    "Social Security No. [[SSN:234 56 7890]]",
    "ss#: [[SSN:345678901]]",
]
SSN_NEAR = [
    "SSN: 000-12-3456", "SSN: 666-12-3456", "SSN: 900-12-3456", "SSN: 987-65-4321", "SSN: 123-00-4567",
    "SSN: 123-45-0000", "The form number is 123456789.", "ZIP+4 90210-1234 is valid.", "Call 123-4567 after nine.",
    "Parts 123-45-67890 and 12-345-6789 are in stock.", "The range 999-99-9999 is reserved.",
    "Ticket 123 45 6789 was merged.", "SSN: 000-00-0000 (placeholder)", "Invalid SSN 666-66-6666 on the test form.",
    "Model 123-45-678 was recalled.", "Badge 1234-56-7890 lost.", "Serial 123-45-6789-01 of the unit.",
    "Temporary ITIN 912-70-1234 is not an SSN.", "ISBN 0-306-40615-2 is the first edition.",
    "The sum 123+45+6789 equals 6957.",
]

# ------------------------------------------------------------------------- IP

IPV4 = [
    "192.0.2.1", "198.51.100.23", "203.0.113.254", "10.0.0.5", "172.16.254.1", "192.168.1.100", "8.8.8.8",
    "1.1.1.1", "100.64.0.10", "169.254.10.20", "10.20.30.40/24", "192.168.0.0/16", "52.95.110.1", "34.117.59.81",
    "185.199.108.153", "91.198.174.192", "224.0.0.251", "203.0.113.7",
]
IPV6 = [
    "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a",
    "fe80::1%eth0", "::ffff:192.0.2.128", "2001:db8::/32", "2606:4700:4700::1111", "2a00:1450:4001:81c::200e",
    "fd12:3456:789a:1::1", "2001:db8:0:0:1:0:0:1", "64:ff9b::198.51.100.1", "2001:db8::8:800:200c:417a",
    "fe80::a00:27ff:fe4e:66a1%en0",
]
IP_TEMPLATES = [
    "The server at [[IP:{v}]] stopped answering at 3am.",
    "ssh admin@[[IP:{v}]] fails with 'connection refused'.",
    "Allow traffic from [[IP:{v}]] in the firewall.",
    "Last login from [[IP:{v}]] on Tuesday.",
    "nameserver [[IP:{v}]]",
    "Ping [[IP:{v}]] to check the link.",
]
IP_MORE = [
    "Connect to [[IP:10.1.2.3]]:8080 and [[IP:10.1.2.4]]:8080.",
    "curl http://[[[IP:2001:db8::17]]]:8080/health",
    "The log shows [[IP:192.168.10.7]], [[IP:192.168.10.8]] and [[IP:2001:db8::beef:1]].",
    "Gateway=[[IP:192.168.178.1]];DNS=[[IP:192.168.178.2]]",
]
IP_NEAR = [
    "Listen on 127.0.0.1:8080 for local tests.", "Bind to 0.0.0.0 to accept all interfaces.",
    "The address ::1 is the IPv6 loopback.", "Upgrade to version 1.2.3.4 for the fix.",
    "The OID 1.3.6.1.4.1.343 identifies the vendor.", "999.10.10.10 is not an address.",
    "The build 10.0.19041.1 shipped in May.", "Use std::vector or std::map here.",
    "The meeting is at 12:30:45 sharp.", "Section 4.2.1.3 explains the rule.",
    "Broadcast 255.255.255.255 reaches every host.", "The ratio was 1.5.2 in the old format.",
    "The pair dead::beef appears in the hex dump.", "Chapter 10.2.3.4.5 is long.",
    "Versions v1.2.3.4 and v2.0.0.1 are supported.", "Times 10:20 and 11:30 work.",
    "Use 256.1.1.1 as an example of an invalid address.", "Priority 01.02.03.04 is a legacy code.",
    "Firmware 2.11.3.7 adds support for WPA3.", "C++: Foo::Bar::baz() is the method.",
]

# ------------------------------------------------------------------------ MAC

MACS = [
    "00:1A:2B:3C:4D:5E", "3c:22:fb:9a:10:7e", "00-1A-2B-3C-4D-5F", "a4-83-e7-12-34-56", "001a.2b3c.4d5e",
    "f0:18:98:aa:bb:cc", "08:00:27:4e:66:a1", "DC:A6:32:01:23:45", "b8:27:eb:12:34:56", "70:B3:D5:00:00:01",
    "aa:bb:cc:dd:ee:ff", "0050.5600.0001",
]
MAC_TEMPLATES = [
    "The printer's MAC address is [[MAC:{v}]].",
    "Reserve an address for [[MAC:{v}]] in the router.",
    "ether [[MAC:{v}]]  txqueuelen 1000",
    "Device [[MAC:{v}]] joined the network at 08:15.",
]
MAC_NEAR = [
    "The time 12:34:56 is logged.", "Colors #1A2B3C and #4D5E6F are used in the theme.",
    "The hash starts with 1a2b3c4d5e6f.", "Ratio 10:20:30:40:50 in the mix.",
    "The word dead.beef.cafe is a joke.", "The sequence 00:1A:2B:3C:4D is truncated.",
    "Timestamps 01:02:03:04:05:06:07 are odd.", "Part 12-34-56-78 is in stock.",
]

# ------------------------------------------------------------------------ URL

URLS = [
    "https://admin:s3cr3t@db.example.com:5432/prod", "postgres://app:Pa55w0rd@10.0.0.12/appdb",
    "https://api.example.com/v1/items?token=9f8e7d6c5b4a", "https://example.com/reset?access_token=ya29.a0AfH6SMBx",
    "https://storage.example.com/file.pdf?X-Amz-Credential=AKIDEXAMPLE%2F20240312&X-Amz-Signature=fe5f80f77d5fa3be",
    "https://hooks.example.com/trigger?key=abc123def456", "ftp://backup:hunter22@files.example.org/dumps/",
    "https://example.com/callback#access_token=eyJhbGciOi&token_type=bearer",
    "https://maps.example.com/api?api_key=Zx81kLmN0pQr", "https://example.org/share?sig=Jk3l5M7n9P&expires=1710000000",
    "redis://:verysecret@cache.example.com:6379/0", "mongodb+srv://admin:Adm1nPass@cluster0.example.net/test",
    "https://example.com/login?user=bob&password=letmein123", "https://gitlab.example.com/api/v4/projects?private_token=glx8x9y0",
    "https://example.com/download?client_secret=cs_9k2j3h4g&client_id=web",
    "amqp://guest:guest@rabbit.example.com:5672/", "https://example.com/s?auth_token=7d8e9f0a1b2c",
    "https://example.com/go?redirect=https://other.example.com/cb?token=abc987",
    "https://user:pa%40ss@example.com/private", "https://example.com/api;jsessionid=1A2B3C?sessionid=Zz99Yy88",
]
URL_TEMPLATES = [
    "The job fails when it fetches [[URL:{v}]] — any idea?",
    "Config: DATABASE_URL=[[URL:{v}]]",
    "Open [[URL:{v}]] in the browser.",
    "See the link ([[URL:{v}]]) from the email.",
    "curl -s '[[URL:{v}]]' | jq .",
]
URL_NEAR = [
    "The docs are at https://example.com/docs/getting-started.", "Search https://www.example.org/search?q=privacy&page=2 for more.",
    "Clone https://github.com/example/project.git and build.", "See https://en.wikipedia.org/wiki/Luhn_algorithm.",
    "The feed https://example.com/rss?category=tech&limit=20 updates hourly.", "Visit http://localhost:3000/ after starting.",
    "The image https://cdn.example.com/img/logo.png?v=3 loads slowly.", "https://example.com/?utm_source=newsletter&utm_medium=email",
    "Download from https://example.com/releases/v1.2.3/app.tar.gz.", "mailto:someone is not a URL with a token.",
    "https://example.com/keyboard-shortcuts lists them all.", "https://example.com/search?keyword=token&sort=asc",
    "https://example.com/author?author=smith", "The API root is https://api.example.com/v2/.",
    "https://user@example.com/repo has a user but no password.", "https://example.com/?page=token",
]

# --------------------------------------------------------------------- secret

SECRETS = [
    "sk-proj-4fGh7Jk9Lm2Np5Qr8St1Uv3Wx6Yz0Ab2Cd4Ef6Gh8", "sk-ant-api03-Xy7Zq2Wv9Ut4Sr1Qp6On3Ml8Kj5Ih0Gf2Ed7Cb4Aa-9ZyXwVu",
    "AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "gho_9aZ8yX7wV6uT5sR4qP3oN2mL1kJ0iH9gF8eD", "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVw",
    "xoxb-2048-1234567890-AbCdEfGhIjKlMnOpQrStUvWx", "xoxp-123456789012-1234567890123-AbCd1234EfGh",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "glpat-xY9zW8vU7tS6rQ5pO4nM",
    "sk_live_51Hb3kLm9Np2Qr5St8Uv1Wx4Yz", "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
]
SECRET_TEMPLATES = [
    "Here is the key I used: [[SECRET:{v}]] — it stopped working.",
    "Authorization: Bearer [[SECRET:{v}]]",
    "The CI log printed [[SECRET:{v}]] in plain text.",
    "const client = new Client(\"[[SECRET:{v}]]\");",
]
SECRET_MORE = [
    "DB_PASSWORD=[[SECRET:Tr0ub4dor&3]]",
    "password: \"[[SECRET:correct-horse-battery-staple]]\"",
    "aws_secret_access_key = [[SECRET:q8Ld2Vx9Rt4Kp7Zm1Bn5Cw3Fh6Jy0Ts2Ge8Ua4P]]",
    "\"client_secret\": \"[[SECRET:8Fq2xLr9Tz4Vw7Kp1Nm3]]\",",
    "STRIPE_API_KEY='[[SECRET:rk_live_4eC39HqLyjWDarjtT1zdp7dc]]'",
    "SECRET_KEY = \"[[SECRET:django-insecure-9x!v2@k#m4z&q8w]]\"",
    "api_key: [[SECRET:a8f5f167f44f4964e6c998dee827110c]]",
    "auth_token=[[SECRET:Qm9iOlBhc3N3b3JkMTIz]]",
    "MYSQL_ROOT_PASSWORD=[[SECRET:r00tP@ssw0rd!]]",
    "slack_token: [[SECRET:xoxb-1111-2222-aBcDeFgHiJkLmNoP]]",
    "Use the token [[SECRET:Zt7Qx9Lw2Rv5Kp8Nm1Bc4Hd6]] for the staging API.",
    "Session id [[SECRET:Xq4Lz9Tn2Wv7Kr5Pm8Hb3Jd6]] expired.",
    "The webhook secret is [[SECRET:whsec_Mv2Rt8Lq4Zn7Xp1Kw9Bc3Fd]].",
    "passwd: [[SECRET:hunter2!x]]",
    "My key:\n[[SECRET:-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi3fOzDqPQkXlJ4lZkq0dF2ce6V\nq8rXq1T7wq9m5cF3Zx2Yb7Kp4Lm9Nq3Rs8Tu1Vw6Xy0Za2Bc4De6Fg8Hi0Jk2Lm4\n-----END RSA PRIVATE KEY-----]]",
    "[[SECRET:-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDf0dOH8z1Xo2xYb7Kp4Lm9Nq3Rs8Tu1Vw6Xy0Za2Bc4QAAAJi1bm4utW5u\n-----END OPENSSH PRIVATE KEY-----]]",
    "[[SECRET:-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oWGkjKOsPDCwoAoGCCqGSM49\nAwEHoUQDQgAEtz2mr7SZiAMfQyuvBjM9Oi3fOzDqPQkXlJ4lZkq0dF2ce6V]] (the END line got cut off)",
    "The leaked value was [[SECRET:9xK2mL7pQ4rT8vW1zN5bC3dF6gH]] according to the scanner.",
    "token = \"[[SECRET:tK8mZ2qL9xR4vN7pW1cB5hJ3]]\"",
    "GITHUB_TOKEN=[[SECRET:ghs_Kq8Lm2Nz4Xp7Rv9Tw1Yb3Cd5Fg6Hj0Ak2Me]]",
    "HF_TOKEN=[[SECRET:hf_ZyXwVuTsRqPoNmLkJiHgFeDcBa98765432]]",
    "key: [[SECRET:AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY]]",
    "private_key_password = [[SECRET:Xk9#mP2$vL]]",
    "let jwt = '[[SECRET:eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhdXRoLmV4YW1wbGUuY29tIiwic3ViIjoiNDIifQ.aGVsbG8td29ybGQtc2lnbmF0dXJlLXZhbHVl]]';",
    "The backup script reads PGPASSWORD=[[SECRET:pg_Qw3rTy9Zx]] from the environment.",
    "Random API secret: [[SECRET:Jd83kLq0Zm29XwPv71TnRb46]]",
    "credentials: [[SECRET:u7Yt5Re3Wq1Zx9Cv7Bn5Mk3]]",
]
SECRET_NEAR = [
    "commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39 fixed the race.",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "The request id is 550e8400-e29b-41d4-a716-446655440000.",
    "Rename getUserAccountSettings2 to loadAccountSettings.",
    "AbstractSingletonProxyFactoryBean is a famous class name.",
    "The word internationalization has twenty letters.",
    "password: ********",
    "api_key: YOUR_API_KEY_HERE",
    "token: <your token>",
    "password = os.environ['DB_PASSWORD']",
    "Set OPENAI_API_KEY=${OPENAI_API_KEY} in the shell.",
    "The tokenizer: gpt2 setting is the default.",
    "password: required",
    "max_tokens: 1024",
    "The ProjectReport_Q3_2024_Final.docx file is attached.",
    "Use sk-learn? No, it is scikit-learn.",
    "HTTP2ConnectionManager handles the streams.",
    "MyComponent_v2_FinalVersion should be deleted.",
    "The colour #1a2b3c is used for links.",
    "The Docker image is sha256:4bcff63911fcb4448bd4fdacec207030997caf25e9bea4045fa6c8c44de311d1.",
    "Test case test_handles_UTF8_input_correctly passes.",
    "The key insight: nothing is cached.",
    "Secret: the recipe uses brown butter.",
    "AKIA is the prefix of AWS access key ids.",
    "ghp_ is the prefix of GitHub tokens.",
    "Kubernetes kubernetesClusterRoleV1beta1 objects are deprecated.",
    "The file IMG_20240312_Beach_Sunset.jpg is large.",
    "Install libX11-devel-1.8.4-Fedora38 first.",
    "The passwordless login is enabled.",
    "-----BEGIN PUBLIC KEY----- blocks are safe to share.",
    "token_type: bearer",
    "The antidisestablishmentarianism debate continues.",
    "Windows10Pro22H2Build19045 is the image name.",
    "The ConfigLoader2024Migration ran twice.",
    "NSURLSessionDataTask2 is a made-up class.",
    "key = value pairs are separated by newlines.",
    "password = input('Password: ')",
    "git checkout 9fceb02 and rebuild.",
    "The MD5 is d41d8cd98f00b204e9800998ecf8427e.",
    "The base64 of hello world is aGVsbG8gd29ybGQ=.",
]

# ----------------------------------------------------------------------- TERM

TERM_ITEMS = [
    ("Ask [[TERM:Jane Roe]] whether the draft is final.", ["Jane Roe"]),
    ("[[TERM:JANE ROE]] signed the lease; [[TERM:jane roe]] also paid.", ["Jane Roe"]),
    ("Deliver to [[TERM:221B Baker Street]], London.", ["221B Baker Street"]),
    ("Deliver to [[TERM:221b  baker\nstreet]] please.", ["221B Baker Street"]),
    ("Dr. [[TERM:Łukasz Żółć]] will see you now.", ["Łukasz Żółć"]),
    ("[[TERM:ŁUKASZ ŻÓŁĆ]] confirmed.", ["Łukasz Żółć"]),
    ("Η [[TERM:ΣΟΦΊΑ]] έρχεται αύριο.", ["σοφία"]),
    ("Позвоните [[TERM:Дмитрию]] завтра.", ["дмитрию"]),
    ("我叫[[TERM:王小明]]，住在北京。", ["王小明"]),
    ("Project [[TERM:Nightingale]] launches in May.", ["Nightingale"]),
    ("The patient, [[TERM:Ærø Hansen]], is stable.", ["ærø hansen"]),
    ("Send it to [[TERM:Müller]] and [[TERM:MÜLLER]] (same person).", ["Müller"]),
    ("[[TERM:Acme Corp]]'s lawyer called.", ["Acme Corp"]),
    ("Meeting with [[TERM:O'Brien]] at noon.", ["O'Brien"]),
    ("Address: [[TERM:Hauptstraße 5]], 10115 Berlin", ["Hauptstraße 5"]),
    ("[[TERM:Anna]], [[TERM:Bob]] and [[TERM:Chloé]] joined.", ["Anna", "Bob", "Chloé"]),
    ("Ping [[TERM:Jane Roe-Smith]] first, then [[TERM:Jane Roe]].", ["Jane Roe", "Jane Roe-Smith"]),
    ("Call [[TERM:Anna]]!", ["anna"]),
    ("«[[TERM:Chloé]]» est arrivée.", ["Chloé"]),
    ("The code name was [[TERM:Bluebird]].", ["BLUEBIRD"]),
]
TERM_NEAR = [
    ("Annabel and Hannah arrived.", ["Anna"]),
    ("The bobcat ran off.", ["Bob"]),
    ("Chloéa is a different name.", ["Chloé"]),
    ("Nightingales sing at night.", ["Nightingale"]),
    ("Müllerstraße is a street.", ["Müller"]),
    ("Jane Roebuck is someone else.", ["Jane Roe"]),
    ("The Acme Corporation is unrelated.", ["Acme Corp"]),
    ("Bluebirds nest here.", ["Bluebird"]),
    ("Annaberg is a town.", ["Anna"]),
    ("A bobsleigh team.", ["Bob"]),
]

# ---------------------------------------------------------------- mixed, none

MIXED = [
    "Hi, I'm moving. New address for invoices: [[EMAIL:billing@example.com]], phone [[PHONE:+44 20 7946 0123]], IBAN [[IBAN:GB33BUKB20201555555555]].",
    "Server [[IP:10.0.4.17]] (MAC [[MAC:00:16:3e:5a:1b:2c]]) keeps rebooting; the admin is [[EMAIL:ops@example.net]].",
    "Reset link: [[URL:https://example.com/reset?token=Hq9sLx2Vz7]] — reply to [[EMAIL:help@example.com]] if it expires.",
    "Card [[CARD:4111 1111 1111 1111]], SSN [[SSN:123-45-6789]], call [[PHONE:(415) 555-0150]].",
    "ENV:\nOPENAI_API_KEY=[[SECRET:sk-proj-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv]]\nDB_HOST=[[IP:192.168.5.20]]\nADMIN_EMAIL=[[EMAIL:root@example.org]]",
    "Pay [[IBAN:DE89 3704 0044 0532 0130 00]] or card [[CARD:5555 5555 5555 4444]].",
    "The VPN peer [[IP:2001:db8:aaaa::2]] and [[IP:198.51.100.77]] both time out.",
    "[[EMAIL:a@example.com]],[[EMAIL:b@example.com]]",
    "Phone [[PHONE:+33 6 12 34 56 78]]/[[EMAIL:claire@example.fr]]",
    "Log: user=[[EMAIL:eve@example.com]] ip=[[IP:203.0.113.9]] key=[[SECRET:AKIAZ7Q4LMNB2XYW3PQR]]",
    "Git remote [[URL:https://oauth2:glpat-AbCdEfGhIjKlMnOpQrSt@gitlab.example.com/team/app.git]] is stale.",
    "Transfer from [[IBAN:FR7630006000011234567890189]] to [[IBAN:ES9121000418450200051332]] failed.",
    "Two cards: [[CARD:378282246310005]] and [[CARD:6011111111111117]].",
    "wifi: [[MAC:b8:27:eb:aa:bb:cc]] got [[IP:192.168.1.23]] from [[IP:192.168.1.1]]",
    ("Customer [[TERM:Jane Roe]] ([[EMAIL:jane.roe@example.com]], [[PHONE:415-555-0177]]) asked for a refund to [[CARD:4242 4242 4242 4242]].",
     ["Jane Roe"]),
    "The token [[SECRET:ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5]] was in [[URL:https://ci.example.com/build?access_token=ZZ11yy22XX33]].",
    "See [[EMAIL:legal@example.com]]; SSN on file: [[SSN:219-09-9999]].",
    "Fax: [[PHONE:+49 89 1234 5678]] · E-Mail: [[EMAIL:info@example.de]]",
    "Accounts: [[IBAN:NL91ABNA0417164300]]; [[IBAN:BE68539007547034]]",
    "mac=[[MAC:3C-22-FB-9A-10-7E]]&ip=[[IP:100.64.1.2]]",
]
NONE = [
    "The weather in Lisbon was lovely last week.",
    "Please summarise the attached meeting notes in three bullet points.",
    "What is the difference between a list and a tuple in Python?",
    "Our quarterly revenue grew 12% to 4.5 million euros.",
    "The train leaves at 08:15 from platform 9 and arrives at 11:40.",
    "Version 2.3.1 fixes the memory leak reported in issue 4521.",
    "Chapter 3 covers sections 3.1 to 3.7.",
    "Translate 'good morning' into German and French.",
    "The recipe needs 250 g flour, 2 eggs and 100 ml milk.",
    "In 1969 the Apollo 11 mission landed on the Moon.",
    "Matrix multiplication costs O(n^3) with the schoolbook algorithm.",
    "The function returns -1 on error and 0 on success.",
    "Set the learning rate to 3e-4 and the batch size to 64.",
    "The stadium holds 81,365 spectators.",
    "Use git rebase -i HEAD~3 to squash the commits.",
    "The HTTP status 404 means not found; 503 means unavailable.",
    "Bonjour, pouvez-vous m'aider avec ma facture ?",
    "Kannst du mir bitte den Unterschied zwischen 'seit' und 'seid' erklären?",
    "東京の天気はどうですか？",
    "The unicode snowman ☃ and the euro sign € are multi-byte.",
    "Rust's Option<T> and Result<T, E> replace null and exceptions.",
    "The model has 135M parameters and a context of 2048 tokens.",
    "SELECT name FROM users WHERE id = 42;",
    "The password field must be at least 12 characters long.",
    "Email me the summary when you can.",
    "The IP protocol and the MAC layer are separate.",
    "Store the API key in a secrets manager, never in the repo.",
    "Luhn's algorithm validates card numbers with a check digit.",
    "IBANs are checked with the ISO 7064 mod 97-10 scheme.",
    "Call the function twice and compare the results.",
]


def main():
    rng = random.Random(20240312)
    items = []

    # Emails
    items += [item(s) for s in pair(EMAIL_TEMPLATES, EMAILS)]
    items += [item(s) for s in EMAIL_MORE]
    items += [item(s, "EMAIL") for s in EMAIL_NEAR]

    # Phones
    items += [item(s) for s in pair(PHONE_TEMPLATES, PHONES)]
    items += [item(s) for s in PHONE_MORE]
    items += [item(s, "PHONE") for s in PHONE_NEAR]

    # Cards: generated valid numbers, the brands' test numbers, and near misses
    cards = []
    for prefix, length, sizes in CARD_BRANDS:
        number = luhn_complete(prefix, length, rng)
        cards.append(group(number, sizes, rng.choice([" ", "-"]) if len(sizes) > 1 else ""))
    cards += CARD_FIXED
    for c in cards:
        assert luhn_ok(c), c
    items += [item(s) for s in pair(CARD_TEMPLATES, cards)]
    near_cards = []
    for prefix, length, sizes in CARD_BRANDS:  # the same layouts, check digit off by one
        number = luhn_complete(prefix, length, rng)
        wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
        near_cards.append(group(wrong, sizes, " " if len(sizes) > 1 else ""))
    for prefix, length in [("1", 16), ("9", 16), ("8", 16), ("7", 15), ("0", 16), ("99", 19), ("12", 14)]:
        near_cards.append(luhn_complete(prefix, length, rng))  # Luhn-valid, no issuer
    near_cards += ["4111 1111 1111 1112", "5555 5555 5555 4445", "3782 822463 10006", "4111 1111 1111",
                   "4111111111111111111111", "9780306406157", "4006381333931"]
    for c in near_cards[:len(CARD_BRANDS)] + near_cards[-7:-4]:
        assert not luhn_ok(c), c
    items += [item(s, "CARD") for s in pair(CARD_NEAR_TEMPLATES, near_cards)]

    # IBANs
    ibans = []
    for i, (country, bban) in enumerate(IBAN_BBANS):
        value = iban(country, bban)
        ibans.append(spaced(value) if i % 2 == 0 else value)
    for v in ibans:
        assert iban_ok(v), v
    items += [item(s) for s in pair(IBAN_TEMPLATES, ibans)]
    near_ibans = []
    for i, (country, bban) in enumerate(IBAN_BBANS[:24]):
        value = iban(country, bban)
        if i % 3 == 0:  # check digits wrong
            wrong = value[:2] + f"{(int(value[2:4]) + 1) % 100:02d}" + value[4:]
        elif i % 3 == 1:  # one BBAN digit changed
            k = next(j for j in range(len(value) - 1, 3, -1) if value[j].isdigit())
            wrong = value[:k] + str((int(value[k]) + 3) % 10) + value[k + 1:]
        else:  # two neighbours swapped (where they differ)
            k = next(j for j in range(5, len(value) - 1) if value[j] != value[j + 1])
            wrong = value[:k] + value[k + 1] + value[k] + value[k + 2:]
        assert not iban_ok(wrong), wrong
        near_ibans.append(spaced(wrong) if i % 2 else wrong)
    near_ibans += ["DE89 3704 0044 0532 0130", "XX82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 3",
                   "NL91 ABNA 0417 1643 001"]
    items += [item(s, "IBAN") for s in pair(IBAN_NEAR_TEMPLATES, near_ibans)]

    # SSNs
    items += [item(s) for s in pair(SSN_TEMPLATES, SSNS)]
    items += [item(s) for s in SSN_MORE]
    items += [item(s, "SSN") for s in SSN_NEAR]

    # IPs, MACs
    items += [item(s) for s in pair(IP_TEMPLATES, IPV4 + IPV6)]
    items += [item(s) for s in IP_MORE]
    items += [item(s, "IP") for s in IP_NEAR]
    items += [item(s) for s in pair(MAC_TEMPLATES, MACS)]
    items += [item(s, "MAC") for s in MAC_NEAR]

    # URLs, secrets
    items += [item(s) for s in pair(URL_TEMPLATES, URLS)]
    items += [item(s, "URL") for s in URL_NEAR]
    items += [item(s) for s in pair(SECRET_TEMPLATES, SECRETS)]
    items += [item(s) for s in SECRET_MORE]
    items += [item(s, "SECRET") for s in SECRET_NEAR]

    # Terms
    items += [item(s, terms=t) for s, t in TERM_ITEMS]
    items += [item(s, "TERM", terms=t) for s, t in TERM_NEAR]

    items += [item(m[0], terms=m[1]) if isinstance(m, tuple) else item(m) for m in MIXED]
    items += [item(s) for s in NONE]

    for it in items:
        sys.stdout.write(json.dumps(it, ensure_ascii=False) + "\n")
    print(f"{len(items)} items", file=sys.stderr)


if __name__ == "__main__":
    main()
