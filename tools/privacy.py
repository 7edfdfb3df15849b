"""Remove patient identifiers from text that is about to leave the machine.

``redact(text, identifiers)`` takes the identifiers a DICOM header carried
(``LoadedImage.identifiers``: DICOM keyword -> value, e.g. ``PatientName: "Doe^John"``,
``PatientBirthDate: "19700131"``, ``AccessionNumber: "A12345"``) and removes every mention of
them, case-insensitively and only as whole words:

- person names (``^``-separated DICOM PN) in DICOM form, natural order ("John Doe"),
  "Doe, John", "Doe John", with middle names, then each name part of 2+ characters alone;
- dates (DA ``YYYYMMDD``) as 19700131, 1970-01-31, 1970/01/31, 31.01.1970, 01/31/1970,
  31-01-1970, 31 Jan 1970, January 31, 1970 ... with or without leading zeros;
- every other value (IDs, accession numbers, addresses) as a phrase.

It returns the cleaned text and how many terms were removed; callers log the count, never the
terms.
"""

from __future__ import annotations

import ast
import calendar
import re
from collections.abc import Iterable

# DICOM keywords whose values are person names (PN); others are matched as whole phrases.
PERSON_NAME_KEYS = frozenset(
    {
        "PatientName",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
        "RequestingPhysician",
    }
)
MIN_TERM_CHARS = 2
_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _values(value: str) -> list[str]:
    """Split a DICOM multi-value (``a\\b`` or pydicom's ``['a', 'b']``) into its values."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        except (ValueError, SyntaxError):
            pass
    return [v.strip() for v in value.split("\\") if v.strip()]


def _phrase(words: Iterable[str], sep: str = r"[\s,^]+") -> str:
    return sep.join(re.escape(w) for w in words)


def _name_patterns(pn: str) -> list[str]:
    parts = [p.strip() for p in pn.split("^")]
    family, given, middle, prefix = ([*parts, "", "", ""])[:4]
    fam, giv, mid = family.split(), given.split(), middle.split()
    patterns = []
    if pn.replace("^", "").strip():
        patterns.append(re.escape(pn.strip("^")))
    if fam and giv:
        for order in (
            [*giv, *mid, *fam],
            [*giv, *fam],
            [*fam, *giv, *mid],
            [*fam, *giv],
            [*([prefix] if prefix else []), *giv, *fam],
        ):
            patterns.append(_phrase(order))
    # Each part alone last, so the longer forms are removed (and counted) first.
    for word in [*fam, *giv, *mid]:
        word = word.strip(".,")
        if len(word) >= MIN_TERM_CHARS:
            patterns.append(re.escape(word))
    return patterns


def _date_patterns(value: str) -> list[str]:
    m = _DA.match(value) or _ISO.match(value)
    if not m:
        return [re.escape(value)]
    y, mo, d = m.groups()
    month, day = int(mo), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return [re.escape(value)]
    mm = rf"0?{month}"
    dd = rf"0?{day}"
    names = rf"(?:{calendar.month_name[month]}|{calendar.month_abbr[month]}\.?)"
    sep = r"[-/.\s]"
    return [
        rf"{y}{mo}{d}",
        rf"{y}{sep}{mm}{sep}{dd}",
        rf"{dd}{sep}{mm}{sep}{y}",
        rf"{mm}{sep}{dd}{sep}{y}",
        rf"{dd}(?:st|nd|rd|th)?\s+(?:of\s+)?{names},?\s+{y}",
        rf"{names}\s+{dd}(?:st|nd|rd|th)?,?\s+{y}",
    ]


def identifier_patterns(identifiers: dict[str, str]) -> list[re.Pattern[str]]:
    """Compiled patterns, longest forms first, for every identifier value."""
    raw: list[str] = []
    for key, value in identifiers.items():
        if value is None:
            continue
        for v in _values(str(value)):
            if len(v) < MIN_TERM_CHARS:
                continue
            if key in PERSON_NAME_KEYS or "^" in v:
                raw.extend(_name_patterns(v))
            elif "Date" in key or _DA.match(v):
                raw.extend(_date_patterns(v))
            else:
                raw.append(_phrase(v.split(), sep=r"\s+"))
    seen: set[str] = set()
    unique = [p for p in raw if not (p in seen or seen.add(p))]
    # Whole words only: "Li" must not eat "lipid".
    return [re.compile(rf"(?<!\w){p}(?!\w)", re.IGNORECASE) for p in unique]


def redact(text: str, identifiers: dict[str, str] | None) -> tuple[str, int]:
    """Remove identifier terms from ``text``; return the text and the number removed."""
    if not text or not identifiers:
        return text, 0
    count = 0
    for pattern in identifier_patterns(identifiers):
        text, n = pattern.subn(" ", text)
        count += n
    if count:
        text = re.sub(r"\s+([,.;:?!])", r"\1", " ".join(text.split()))
        text = re.sub(r"^[\s,.;:]+|[\s,;:]+$", "", text)
    return text, count
