"""Helpers for the privacy tests: a real DICOM carrying chosen identifiers, and spellings.

``write_dicom`` copies pydicom's real ``CT_small.dcm`` and sets the patient's name, ID, birth
date and a study description that repeats the name. The hypothesis strategies generate
identities (names with diacritics, mixed IDs, birth dates) and the ways people and file systems
write them; ``leaks`` says whether a text still carries one.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from tools.privacy import fold


def write_dicom(
    path: Path,
    *,
    name: str = "Zyxwvut^Qqqq",
    patient_id: str = "PIDqqq777",
    birth_date: str = "19610203",
    study: str | None = None,
) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    family = name.split("^")[0]
    ds.StudyDescription = study if study is not None else f"CT abdomen {family}"
    ds.SeriesDescription = f"{patient_id} axial"
    ds.ImageComments = f"call {family} back"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# -- identities and their spellings ---------------------------------------------------------

# Letters that rarely make English words, with diacritics: generated names do not collide with
# the words of the questions, so a hit is a leak and not a coincidence.
_LETTERS = "bcdfgjkqvwxzyäöüéèñçåøß"


@dataclass(frozen=True)
class Identity:
    family: str
    given: str
    patient_id: str
    birth: dt.date

    @property
    def pn(self) -> str:
        return f"{self.family}^{self.given}"

    @property
    def da(self) -> str:
        return self.birth.strftime("%Y%m%d")

    @property
    def identifiers(self) -> dict[str, str]:
        return {"PatientName": self.pn, "PatientID": self.patient_id, "PatientBirthDate": self.da}


def _name(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return (
        st.text(_LETTERS, min_size=min_size, max_size=max_size)
        .map(str.capitalize)
        .filter(lambda s: len(fold(s)) >= min_size)  # "Öè" folds to "o": not a 2-letter name
    )


def identities_with(given_min: int = 2) -> st.SearchStrategy[Identity]:
    return st.builds(
        Identity,
        family=_name(4, 10),
        given=_name(given_min, 8),
        patient_id=st.from_regex(r"\A[A-Z]{2,4}[0-9]{3,7}\Z"),
        birth=st.dates(dt.date(1920, 1, 1), dt.date(2015, 12, 31)),
    )


identities = identities_with(2)
# End to end, a 2-letter name would "leak" through every "db=" and "id" of a request.
long_identities = identities_with(3)


def _ascii(s: str) -> str:
    s = s.replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _german(s: str) -> str:
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
        s = s.replace(a, b)
    return s.replace("ß", "ss")


CASES = (str, str.lower, str.upper, str.title)
FOLDS = (lambda s: s, _ascii, _german)
SEPARATORS = ("_", "-", ".", " ", "", ", ", "^")


@st.composite
def name_spellings(draw: st.DrawFn, who: Identity) -> str:
    first, second = draw(st.permutations([who.family, who.given]))
    if draw(st.booleans()):
        text = draw(st.sampled_from(SEPARATORS)).join([first, second])
    else:
        text = draw(st.sampled_from([who.family, who.given]))
    text = draw(st.sampled_from(FOLDS))(text)
    return draw(st.sampled_from(CASES))(text)


def _date_forms(d: dt.date) -> list[str]:
    day, month, yy, y = d.day, d.month, d.year % 100, d.year
    mon, month_name = d.strftime("%b"), d.strftime("%B")
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(day, "th")
    return [
        f"{day:02d}{month:02d}{y}",
        f"{y}{month:02d}{day:02d}",
        f"{day}/{month}/{yy:02d}",
        f"{month}/{day}/{yy:02d}",
        f"{month:02d}/{day:02d}/{y}",
        f"{day}.{month}.{y}",
        f"{y}-{month:02d}-{day:02d}",
        f"{day:02d}-{month:02d}-{yy:02d}",
        f"{day} {mon} {y}",
        f"{day} {mon.upper()} {yy:02d}",
        f"{day}{suffix} of {month_name} {y}",
        f"{month_name} {day}{suffix}, {y}",
        f"{mon}. {day}, {y}",
        f"{y} {mon} {day}",
        f"{day:02d}{month:02d}{yy:02d}",
    ]


@st.composite
def date_spellings(draw: st.DrawFn, who: Identity) -> str:
    return draw(st.sampled_from(_date_forms(who.birth)))


@st.composite
def id_spellings(draw: st.DrawFn, who: Identity) -> str:
    pid = draw(st.sampled_from([str, str.lower, str.upper]))(who.patient_id)
    form = draw(st.sampled_from(["{}", "{}_scan", "scan-{}.dcm", "x{}y", "({})", "{}.dcm"]))
    return form.format(pid)


@st.composite
def spellings(draw: st.DrawFn, who: Identity) -> str:
    kind = draw(st.sampled_from([name_spellings, date_spellings, id_spellings]))
    return draw(kind(who))


# -- leak detection -------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> set[str]:
    """Folded tokens and their camel-case / letter-digit parts."""
    out: set[str] = set()
    for token in _WORD.findall(text):
        out.add(fold(token))
        for part in re.findall(r"[A-ZÀ-Þ]?[a-zß-ÿ]+|[A-ZÀ-Þ]+(?![a-z])|\d+", token):
            out.add(fold(part))
    return out


def _plain(text: str) -> str:
    """Lower case without diacritics, but no name folding: an ID is a code, and the names' rule
    ``ae`` -> ``a`` would turn ``AE000`` into ``a000``, which any "... a 0.000 ..." matches."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def context(text: str, value: str, width: int = 120) -> str:
    """Where ``value`` (separators ignored) sits in ``text``: for a failing test's message."""
    keep = [i for i, ch in enumerate(text) if _plain(ch).isalnum()]
    k = "".join(_plain(text[i]) for i in keep).find(re.sub(r"[\W_]+", "", _plain(value)))
    return "" if k < 0 else text[max(0, keep[k] - width) : keep[k] + width]


def leaks(text: str, who: Identity, spelled: str = "") -> list[str]:
    """The identifiers ``text`` still carries: a name part as a word, the ID or the written
    spelling anywhere (separators and case ignored)."""
    found = []
    # Inlined figures and content hashes are not text: their random letters make false hits.
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", text)
    text = re.sub(r"(?<![^\W_])[0-9a-f]{8,}(?![^\W_])", "", text)
    words = _words(text)
    squashed = re.sub(r"[\W_]+", "", fold(text))
    for part in (who.family, who.given):
        if fold(part) in words:
            found.append(part)
    if _plain(who.patient_id) in re.sub(r"[\W_]+", "", _plain(text)):
        found.append(who.patient_id)
    if not spelled:
        return found
    if any(c.isalpha() for c in spelled) and not re.search(r"\d", spelled):  # a name
        glued = re.sub(r"[\W_]+", "", fold(spelled))
        if len(glued) >= 6 and glued in squashed:  # shorter ones: checked as words above
            found.append(spelled)
    elif re.search(rf"(?<!\d){re.escape(spelled)}(?!\d)", text, re.IGNORECASE):  # date, ID
        found.append(spelled)
    return found
