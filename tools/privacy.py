"""Remove patient identifiers from text that is about to leave the machine.

``redact(text, identifiers)`` takes the identifiers a DICOM header carried
(``LoadedImage.identifiers``: DICOM keyword -> value, e.g. ``PatientName: "Doe^John"``,
``PatientBirthDate: "19700131"``, ``AccessionNumber: "A12345"``) and removes every mention of
them in the spellings people and file systems produce:

- person names: each name part, in any case, with diacritics folded (``Müller`` = ``Muller`` =
  ``Mueller``, ``ß`` = ``ss``), separated by anything (``Doe_John``, ``doe.john``,
  ``Doe-John``, ``Doe, John``) or by nothing (``DoeJohn``, ``johndoe``), also inside file-name
  tokens (``DoeJohn2021``, ``zyxwvutscan``);
- dates (DA ``YYYYMMDD``): numeric with any separator or none, day/month in both orders,
  two- or four-digit years, with or without leading zeros (``19700131``, ``31011970``,
  ``1970-01-31``, ``1/31/70``, ``31.1.70``), and written (``31 Jan 1970``, ``January 31st,
  1970``, ``31st of January '70``, ``1970 Jan 31``);
- IDs (patient ID, accession, UIDs): with or without separators, also inside longer tokens
  (``PID123_scan``, ``scan-PID123.dcm``);
- other values (institution, address) as a phrase of words, separators and diacritics ignored.

Precision rules, so that ordinary words survive: a name part of two letters is removed only as
a whole token or glued to other name parts ("Li" never eats "lipid"); a part of 3-5 letters
also at a camel-case or letter/digit boundary (``DoeScan``); only parts of 6+ letters are found
anywhere inside a token. Name particles (van, de, ...) go only with the rest of the name.
Numeric IDs shorter than 4 digits and all-letter IDs shorter than 4 are not removed: they
identify nobody, and "12" must stay in "12 nuclei".

It returns the cleaned text and how many mentions were removed; callers log the count, never
the terms. ``RedactingFilter`` applies the same to log records.
"""

from __future__ import annotations

import ast
import calendar
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# DICOM keywords whose values are person names (PN).
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
MIN_TERM_CHARS = 2  # shortest name part removed (as a whole token only)
MIN_BOUNDARY_CHARS = 3  # shortest name part removed at a camel-case / digit boundary
MIN_INSIDE_CHARS = 6  # shortest name part removed anywhere inside a token
MIN_ID_DIGITS = 4  # shortest all-digit ID removed
MIN_ID_INSIDE = 6  # shortest ID removed inside a longer token (mixed IDs: 4)
# Particles of family names: removed with the name they belong to, never alone.
PARTICLES = frozenset(
    {
        "van", "von", "der", "den", "de", "da", "di", "del", "della", "des", "du", "la", "le",
        "las", "los", "al", "el", "bin", "ben", "ibn", "ter", "ten", "zu", "st", "mc", "mac",
    }
)  # fmt: skip
# Characters NFKD does not decompose into a base letter plus marks.
_FOLD = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "ı": "i"}
)
_DIGRAPHS = re.compile(r"(?<=[aou])e")  # German transliteration: ae = ä, oe = ö, ue = ü
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits; "_" separates like "-" and "."
_DA = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


# -- folding ---------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower case, diacritics removed, ``ß`` -> ``ss``, ``ue`` -> ``u`` (so ``Mueller`` =
    ``Müller`` = ``Muller``). Used to compare, never shown."""
    return _fold_map(text)[0]


@lru_cache(maxsize=65536)
def _fold_map(text: str) -> tuple[str, tuple[int, ...]]:
    """The folded text and, for each folded character, the index of its source character.
    Cached: the same tokens come back in every answer and log line."""
    if text.isascii():
        folded, src = text.lower(), tuple(range(len(text)))
    else:
        chars: list[str] = []
        index: list[int] = []
        for i, ch in enumerate(text):
            for c in unicodedata.normalize("NFKD", ch.lower().translate(_FOLD)):
                if not unicodedata.combining(c):
                    chars.append(c)
                    index.append(i)
        folded, src = "".join(chars), tuple(index)
    if "e" not in folded:
        return folded, src
    # Drop the "e" of ae/oe/ue (and of "aee"...); keep the index map aligned.
    keep: list[int] = []
    for j, c in enumerate(folded):
        if not (c == "e" and keep and folded[keep[-1]] in "aou"):
            keep.append(j)
    if len(keep) == len(folded):
        return folded, src
    return "".join(folded[j] for j in keep), tuple(src[j] for j in keep)


def _atoms(text: str) -> list[str]:
    return [fold(t) for t in _TOKEN.findall(text)]


def _boundaries(token: str) -> set[int]:
    """Source indices inside a token where a new word starts: ``DoeJohn``, ``scan2021``,
    ``PIDScan`` (before the last capital of an acronym followed by lower case)."""
    out = {0, len(token)}
    for i in range(1, len(token)):
        a, b = token[i - 1], token[i]
        camel = a.islower() and b.isupper()
        acronym_end = a.isupper() and b.isupper() and token[i + 1 : i + 2].islower()
        if camel or acronym_end or a.isdigit() != b.isdigit():
            out.add(i)
    return out


# -- patterns --------------------------------------------------------------------------------


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


# Month names (English, German) -> month number; matched case-insensitively after folding.
_MONTH_NAMES: dict[str, int] = {}
for _m in range(1, 13):
    for _name in (calendar.month_name[_m], calendar.month_abbr[_m]):
        _MONTH_NAMES[fold(_name)] = _m
_MONTH_NAMES.update(
    {"sept": 9, "marz": 3, "mai": 5, "juni": 6, "juli": 7, "okt": 10, "oktober": 10, "dez": 12}
)
_MONTH_NAMES["dezember"] = 12
_MON = "(?:" + "|".join(sorted([*_MONTH_NAMES, "märz", "maerz"], key=len, reverse=True)) + r")\.?"
_TH = r"(?:st|nd|rd|th|\.)?"
_W = r"[\s_.\-/,]*"
_S = r"[\s_.\-/,]{1,2}"
# Any date-like text; each candidate is then compared with the identifiers' dates. One scan per
# text whatever the number of dates (a long-running server knows hundreds).
_DATE_FINDER = re.compile(
    "|".join(
        [
            rf"(?P<n1>\d{{1,4}}){_S}(?P<n2>\d{{1,2}}){_S}'?(?P<n3>\d{{1,4}})",
            r"(?P<c>\d{6}|\d{8})",
            rf"(?P<d1>\d{{1,2}}){_TH}(?:{_W}of)?{_W}(?P<m1>{_MON}){_W}'?(?P<y1>\d{{2,4}})",
            rf"(?P<m2>{_MON}){_W}(?P<d2>\d{{1,2}}){_TH}{_W}'?(?P<y2>\d{{2,4}})",
            rf"(?P<y3>\d{{4}}){_W}(?P<m3>{_MON}){_W}(?P<d3>\d{{1,2}}){_TH}",
        ]
    ).join([r"(?<!\d)(?:", r")(?!\d)"]),
    re.IGNORECASE,
)


def _date_hits(m: re.Match[str], dates: frozenset[tuple[int, int, int]]) -> bool:
    """Is the date-like match one of ``dates`` read as D M Y, M D Y or Y M D?"""
    g = m.groupdict()
    cands: list[tuple[str, int, int]] = []  # (year text, month, day)
    if g["n1"]:
        a, b, c = g["n1"], g["n2"], g["n3"]
        cands += [(c, int(b), int(a)), (c, int(a), int(b)), (a, int(b), int(c))]
    elif g["c"]:
        c = g["c"]
        if len(c) == 8:
            cands += [(c[4:], int(c[2:4]), int(c[:2])), (c[4:], int(c[:2]), int(c[2:4]))]
            cands.append((c[:4], int(c[4:6]), int(c[6:])))
        else:
            cands += [(c[4:], int(c[2:4]), int(c[:2])), (c[4:], int(c[:2]), int(c[2:4]))]
            cands.append((c[:2], int(c[2:4]), int(c[4:])))
    else:
        for i in "123":
            if g[f"m{i}"]:
                month = _MONTH_NAMES.get(fold(g[f"m{i}"].rstrip(".")), 0)
                cands.append((g[f"y{i}"], month, int(g[f"d{i}"])))
                break
    for yt, mo, d in cands:
        if len(yt) == 4 and (int(yt), mo, d) in dates:
            return True
        if len(yt) == 2 and any((y, mo, d) in dates for y in (1900 + int(yt), 2000 + int(yt))):
            return True
    return False


def _id_pattern(value: str) -> str | None:
    chars = [c for c in value if c.isalnum()]
    n = len(chars)
    digits = sum(c.isdigit() for c in chars)
    if not n or (digits == n and n < MIN_ID_DIGITS) or (digits == 0 and n < 4):
        return None
    body = r"[\s_.\-/]?".join(re.escape(c) for c in chars)
    inside = n >= MIN_ID_INSIDE or (digits and digits < n and n >= 4)
    if inside:  # IDs are found inside longer tokens: "PID123scan", "x-PID123.dcm"
        return rf"(?<![^\W_]){body}" if digits == n else body
    return rf"(?<![^\W_]){body}(?![^\W_])"


@dataclass(frozen=True)
class Redactor:
    """Compiled identifier terms; ``redactor(identifiers)`` builds (and caches) one."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()  # (kind, regex on the raw text)
    names: frozenset[str] = frozenset()  # folded name parts
    particles: frozenset[str] = frozenset()  # "van", "de" of a multi-word family name
    phrases: tuple[tuple[str, ...], ...] = ()  # folded word sequences (institution, address)
    dates: frozenset[tuple[int, int, int]] = frozenset()  # (year, month, day)
    # Any name part anywhere in a folded token: one search before the per-part work.
    names_re: re.Pattern[str] | None = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return bool(self.patterns or self.names or self.phrases or self.dates)

    def __call__(self, text: str) -> tuple[str, int]:
        return redact_with(self, text)


@lru_cache(maxsize=256)
def _build(items: tuple[tuple[str, str], ...]) -> Redactor:
    patterns: list[str] = []
    dates: set[tuple[int, int, int]] = set()
    names: set[str] = set()
    particles: set[str] = set()
    phrases: set[tuple[str, ...]] = set()
    for key, value in items:
        for v in _values(value):
            if len(v) < MIN_TERM_CHARS:
                continue
            if key in PERSON_NAME_KEYS or "^" in v:
                for component in v.split("^"):
                    atoms = [a for a in _atoms(component) if len(a) >= MIN_TERM_CHARS]
                    if len(atoms) > 1:  # "van der Berg": the particles go only with "Berg"
                        particles.update(a for a in atoms if a in PARTICLES)
                    names.update(atoms)
                continue
            m = _DA.match(v)
            if m and ("Date" in key or _DA.match(v)):
                y, mo, d = (int(g) for g in m.groups())
                if 1 <= mo <= 12 and 1 <= d <= 31:
                    dates.add((y, mo, d))
                    continue
            words = _atoms(v)
            if len(words) > 1 and not any(c.isdigit() for c in v):
                phrases.add(tuple(words))
                continue
            p = _id_pattern(v)
            if p and p not in patterns:
                patterns.append(p)
            if len(words) > 1:
                phrases.add(tuple(words))
    # One alternation: a text is scanned once, not once per identifier.
    ids = (("id", re.compile("|".join(f"(?:{p})" for p in patterns), re.I)),) if patterns else ()
    parts = sorted(names | particles, key=len, reverse=True)
    return Redactor(
        ids,
        frozenset(names),
        frozenset(particles),
        tuple(sorted(phrases)),
        frozenset(dates),
        re.compile("|".join(map(re.escape, parts))) if parts else None,
    )


def redactor(identifiers: Mapping[str, Any] | Redactor | None) -> Redactor:
    """A (cached) ``Redactor`` for a dict of DICOM identifiers (or several merged)."""
    if isinstance(identifiers, Redactor):
        return identifiers
    if not identifiers:
        return Redactor()
    items = tuple(sorted((str(k), str(v)) for k, v in identifiers.items() if v is not None))
    return _build(items)


def merge(*identifier_dicts: Mapping[str, Any] | None) -> dict[str, str]:
    """Several images' identifiers as one dict (values of one keyword joined as multi-values)."""
    out: dict[str, list[str]] = {}
    for ids in identifier_dicts:
        for k, v in (ids or {}).items():
            if v is not None and str(v).strip():
                out.setdefault(str(k), []).extend(_values(str(v)))
    return {k: "\\".join(dict.fromkeys(vs)) for k, vs in out.items()}


# -- matching --------------------------------------------------------------------------------


def _name_spans(r: Redactor, text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    if not r.names:
        return spans
    particles: list[tuple[int, int]] = []  # whole-token particles, kept if next to a name
    for m in _TOKEN.finditer(text):
        token = m.group()
        f, src = _fold_map(token)
        if not f or r.names_re is None or not r.names_re.search(f):
            continue
        if f in r.particles:
            particles.append(m.span())
            continue
        starts = {j for j in range(len(f)) if j == 0 or src[j] != src[j - 1]}
        bounds_src = _boundaries(token)
        bounds = {j for j in starts if src[j] in bounds_src} | {0, len(f)}
        accepted: set[tuple[int, int]] = set()
        candidates: set[tuple[int, int]] = set()
        for a in r.names:
            i = f.find(a)
            while i != -1:
                e = i + len(a)
                occ = (i, e)
                if a in r.particles:
                    candidates.add(occ)
                elif (
                    (i == 0 and e == len(f))
                    or (len(a) >= MIN_BOUNDARY_CHARS and i in bounds and e in bounds)
                    or len(a) >= MIN_INSIDE_CHARS
                ):
                    accepted.add(occ)
                else:
                    candidates.add(occ)
                i = f.find(a, i + 1)
        accepted |= _chain(candidates, len(f))  # the token is name parts glued together
        grew = bool(accepted)
        while grew:  # name parts glued to a removed part go with it: "zyxwvutqqqqscan"
            touching = {
                c
                for c in candidates - accepted
                if any(c[0] == a[1] or c[1] == a[0] for a in accepted)
            }
            accepted |= touching
            grew = bool(touching)
        for i, e in accepted:
            start = m.start() + src[i]
            end = m.start() + (src[e] if e < len(f) else len(token))
            spans.append((start, end))
    for ps, pe in reversed(particles):  # "van der Berg": right to left, so "van" follows "der"
        if any(s - pe >= 0 and _JOIN.fullmatch(text[pe:s]) for s, _ in spans):
            nearest = min(s for s, _ in spans if s >= pe)
            if _JOIN.fullmatch(text[pe:nearest]):
                spans.append((ps, pe))
    return spans


def _chain(occ: set[tuple[int, int]], n: int) -> set[tuple[int, int]]:
    """Occurrences that tile the whole token [0, n) with two or more parts, else none."""
    if len(occ) < 2:
        return set()
    by_start: dict[int, list[tuple[int, int]]] = {}
    for o in occ:
        by_start.setdefault(o[0], []).append(o)
    best: dict[int, list[tuple[int, int]]] = {0: []}
    for pos in range(n):
        if pos not in best:
            continue
        for o in by_start.get(pos, []):
            best.setdefault(o[1], best[pos] + [o])
    path = best.get(n)
    return set(path) if path and len(path) >= 2 else set()


def _phrase_spans(r: Redactor, text: str) -> list[tuple[int, int]]:
    if not r.phrases:
        return []
    tokens = [(m.start(), m.end(), fold(m.group())) for m in _TOKEN.finditer(text)]
    words = [t[2] for t in tokens]
    starts: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        starts.setdefault(w, []).append(i)
    spans = []
    for phrase in r.phrases:
        k = len(phrase)
        for i in starts.get(phrase[0], ()):
            if tuple(words[i : i + k]) == phrase:
                spans.append((tokens[i][0], tokens[i + k - 1][1]))
    return spans


# Gaps that join two mentions into one ("Doe, John", "Zyxwvut_Qqqq", "qqqq.zyxwvut").
_JOIN = re.compile(r"[\s,^_.\-']*")
_POSSESSIVE = re.compile(r"['’]s\b", re.IGNORECASE)


def find(r: Redactor, text: str) -> list[tuple[int, int]]:
    """The spans of ``text`` that are identifier mentions, merged, in order."""
    raw: list[tuple[int, int, str]] = []
    for kind, pattern in r.patterns:
        raw += [(m.start(), m.end(), kind) for m in pattern.finditer(text) if m.end() > m.start()]
    if r.dates:
        pos = 0
        while m := _DATE_FINDER.search(text, pos):
            if _date_hits(m, r.dates):
                raw.append((m.start(), m.end(), "date"))
                pos = m.end()
            else:  # "12 3/2/61": the date may start inside a longer non-date match
                pos = m.start() + 1
    raw += [(s, e, "name") for s, e in _name_spans(r, text)]
    raw += [(s, e, "phrase") for s, e in _phrase_spans(r, text)]
    raw.sort()
    merged: list[list[Any]] = []
    for s, e, kind in raw:
        if merged:
            last = merged[-1]
            gap = text[last[1] : s]
            joined = s <= last[1] or (
                kind == "name" == last[2] and _JOIN.fullmatch(gap) is not None
            )
            if joined:
                last[1] = max(last[1], e)
                continue
        merged.append([s, e, kind])
    return [(s, e) for s, e, _ in merged]


def redact_with(r: Redactor, text: str) -> tuple[str, int]:
    if not text or not r:
        return text, 0
    spans = find(r, text)
    if not spans:
        return text, 0
    out: list[str] = []
    pos = 0
    for s, e in spans:
        possessive = _POSSESSIVE.match(text, e)
        if possessive:  # "Doe's scan" -> "scan"
            e = possessive.end()
        before, after = text[pos:s], text[e : e + 1]
        # A separator that joined the mention to a word goes with it: "scan-PID1.dcm" -> "scan.dcm"
        if before and before[-1] in "_-" and (not after or not after.isalnum()):
            before = before[:-1]
        elif after in ("_", "-") and (not before or not before[-1].isalnum()):
            e += 1
        out.append(before)
        last = next((c for c in reversed(out) if c), "")[-1:]
        if last.isalnum() and text[e : e + 1].isalnum():
            out.append(" ")
        pos = e
    out.append(text[pos:])
    clean = "".join(out)
    clean = re.sub(r"\(\s*[,;]?\s*\)|\[\s*\]", "", clean)
    clean = re.sub(r"[ \t]+([,.;:?!)])", r"\1", clean)
    clean = re.sub(r"([(\[])[ \t]+", r"\1", clean)
    clean = re.sub(r"[ \t]{2,}", " ", clean)
    clean = re.sub(r"^[\s,.;:_\-]+|[\s,;:_\-]+$", "", clean)
    return clean.strip(), len(spans)


def redact(text: str, identifiers: Mapping[str, Any] | Redactor | None) -> tuple[str, int]:
    """Remove identifier terms from ``text``; return the text and the number removed."""
    if not text or not identifiers:
        return text, 0
    return redact_with(redactor(identifiers), text)


def clean(text: str, identifiers: Mapping[str, Any] | Redactor | None) -> str:
    """``redact`` without the count."""
    return redact(text, identifiers)[0]


def redact_data(obj: Any, identifiers: Mapping[str, Any] | Redactor | None) -> Any:
    """Every string inside dicts/lists/tuples redacted (keys too); other values as they are."""
    r = redactor(identifiers)
    if not r:
        return obj

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            return redact_with(r, o)[0]
        if isinstance(o, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return type(o)(walk(v) for v in o)
        return o

    return walk(obj)


def redact_model(model: Any, identifiers: Mapping[str, Any] | Redactor | None) -> Any:
    """A copy of a pydantic model with every string field redacted."""
    r = redactor(identifiers)
    if not r:
        return model
    return type(model).model_validate(redact_data(model.model_dump(mode="json"), r))


def display_name(name: str, identifiers: Mapping[str, Any] | Redactor | None) -> str:
    """A file name fit to show or send: identifier parts removed, suffix kept
    (``Zyxwvut_Qqqq scan.dcm`` -> ``scan.dcm``; all-identifier names become ``image.dcm``)."""
    r = redactor(identifiers)
    if not r:
        return name
    lower = name.lower()
    suffix = ".nii.gz" if lower.endswith(".nii.gz") else Path(name).suffix
    if suffix != ".nii.gz" and (
        not re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix) or redact_with(r, suffix[1:])[1]
    ):
        suffix = ""  # "1.1.2000 ct", "Doe.John": the dots are not a suffix's
    stem = name[: len(name) - len(suffix)] if suffix else name
    clean_stem = redact_with(r, stem)[0].strip(" _-.") or "image"
    return f"{clean_stem}{suffix}"


def display_path(path: str | Path, identifiers: Mapping[str, Any] | Redactor | None) -> str:
    """A path fit to show: each folder and the file name cleaned like ``display_name``."""
    p = Path(path)
    r = redactor(identifiers)
    if not r:
        return str(p)
    parts = [p.anchor] if p.anchor else []
    parts += [display_name(part, r) for part in p.parts[len(parts) :]]
    return str(Path(*parts)) if parts else str(p)


# -- logs ------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts log records against the identifiers of the images this process loaded last.

    A log line can carry a question, a file name or an exception text, so the record's message
    (and its exception text) is formatted and cleaned before any handler sees it. It keeps the
    identifiers of the last ``keep`` images: a long-running server indexing thousands of files
    must not slow every log line down with all of them.
    """

    def __init__(self, keep: int = 256) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[tuple[str, str], ...], None] = OrderedDict()
        self._keep = keep
        self._r = Redactor()

    def remember(self, identifiers: Mapping[str, Any] | None) -> None:
        if not identifiers:
            return
        key = tuple(sorted((str(k), str(v)) for k, v in identifiers.items() if v is not None))
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return
            self._recent[key] = None
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
            self._r = redactor(merge(*(dict(k) for k in self._recent)))

    def filter(self, record: logging.LogRecord) -> bool:
        r = self._r
        if not r:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact_with(r, message)[0]
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_with(r, record.exc_text)[0]
        return True


# One per process: records come from any thread and module, and must be cleaned of every image
# loaded so far whatever handlers the application (CLI, Chainlit, uvicorn) sets up.
LOG_FILTER = RedactingFilter()
_installed = threading.Lock()
_factory: list[Any] = []


def install() -> None:
    """Clean every log record at creation (a record factory sees the records of all loggers and
    handlers, also those configured later). Idempotent."""
    with _installed:
        if _factory:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            LOG_FILTER.filter(record)
            return record

        _factory.append(factory)
        logging.setLogRecordFactory(factory)


def remember(identifiers: Mapping[str, Any] | None) -> None:
    """Let the log redaction know the identifiers of an image that was loaded."""
    if identifiers:
        install()
        LOG_FILTER.remember(identifiers)
