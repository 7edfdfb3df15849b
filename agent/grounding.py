"""Claim-level verification: a sentence stays only if the sources it cites support it.

The verify node runs this on every answer, written by the chat model or by the rules, before
``citations.verify`` numbers the sources. Without an LLM, "supported" means, for each sentence
and the union of the sources it cites (title, snippet, typed facts, authors, year):

- **numbers**: every number, with its unit, is one of the sources' numbers, rounded as the
  sentence rounds it or converted (% <-> fraction, nm/um/mm/cm, um^2/mm^2, per um^2/per mm^2,
  ms/s, and px -> um, px^2 -> um^2 with the pixel size the sources give); a number named for a
  quantity ("3+ is 57%", "density per mm^2 is 139") must match a fact of that quantity, so 57%
  of *all* positivity does not support "3+", and 139 px^2 of area does not support a density;
- **named entities**: acronyms, gene and drug names, capitalised terms and identifiers occur in
  the cited sources (or in the question);
- **polarity**: a sentence that negates ("no", "not", "absent", "without") what the closest
  source sentence affirms, or affirms what it negates, is not supported;
- **words**: a sentence shares enough of its content words with what it cites.

An unsupported sentence is dropped and, when nothing else cites its sources, replaced by the
extractive (rule-based) sentences for the same sources; the answer says so in a note and a
warning. A right claim without a citation is attached to the one source that supports it. If
nothing survives, the rule-based answer is given, with a warning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from agent.citations import CITE, cited_numbers, split_sentences
from agent.sanitize import fold
from litevlm.types import Source

REPLACED_NOTE = (
    "Note: {n} sentence(s) of the model's answer were not supported by the sources they cite "
    "and were left out{replaced}; see the warnings."
)

# -- units -------------------------------------------------------------------------------

# canonical unit -> (family, factor to the family's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "%": ("fraction", 0.01), "": ("plain", 1.0),
    "nm": ("length", 1e-3), "um": ("length", 1.0), "mm": ("length", 1e3), "cm": ("length", 1e4),
    "px": ("px", 1.0), "px^2": ("px2", 1.0),
    "um^2": ("area", 1.0), "mm^2": ("area", 1e6), "cm^2": ("area", 1e8),
    "per um^2": ("density", 1e6), "per mm^2": ("density", 1.0), "per cm^2": ("density", 1e-2),
    "ms": ("time", 1.0), "s": ("time", 1e3),
    "kv": ("voltage", 1.0), "ma": ("current", 1.0), "mas": ("exposure", 1.0),
    "t": ("field", 1.0), "hu": ("hu", 1.0), "deg": ("angle", 1.0), "hz": ("freq", 1.0),
    "mhz": ("freq", 1e6),
}  # fmt: skip
_SQ = r"(?:\^?2|²|\s?sq)"
_UNIT_PATTERNS: list[tuple[str, str]] = [
    (rf"(?:/|per\s+(?:square\s+)?)(?:mm{_SQ}|mm\b|millimet(?:re|er)s?\b)", "per mm^2"),
    (rf"(?:/|per\s+)(?:um|µm|μm){_SQ}", "per um^2"),
    (rf"(?:/|per\s+)cm{_SQ}", "per cm^2"),
    (r"%|percent\b|per ?cent\b", "%"),
    (rf"(?:px|pixels?){_SQ}|square pixels?", "px^2"),
    (rf"(?:um|µm|μm|micrometres?|micrometers?|microns?){_SQ}|square micro\w+", "um^2"),
    (rf"mm{_SQ}|square millimet\w+", "mm^2"),
    (rf"cm{_SQ}", "cm^2"),
    (r"nm\b|nanomet\w+", "nm"),
    (r"(?:um|µm|μm)\b|micrometres?\b|micrometers?\b|microns?\b|mpp\b", "um"),
    (r"mm\b|millimet(?:re|er)s?\b", "mm"),
    (r"cm\b|centimet(?:re|er)s?\b", "cm"),
    (r"px\b|pixels?\b", "px"),
    (r"kvp?\b|kilovolts?\b", "kv"),
    (r"mas\b", "mas"),
    (r"ma\b|milliamp\w*", "ma"),
    (r"ms\b|milliseconds?\b|msec\b", "ms"),
    (r"s\b|sec\b|seconds?\b", "s"),
    (r"t\b|tesla\b", "t"),
    (r"hu\b|hounsfield\b", "hu"),
    (r"°|deg\b|degrees?\b", "deg"),
    (r"mhz\b", "mhz"),
    (r"hz\b", "hz"),
]
_UNIT_AFTER = re.compile(
    r"\s?(?:(?:nuclei|cells|objects|positive cells|voxels)\s*)?("
    + "|".join(f"(?:{p})" for p, _ in _UNIT_PATTERNS)
    + ")",
    re.I,
)
_UNIT_BEFORE = re.compile(
    r"(per\s+(?:square\s+)?mm(?:\^?2|²)?|/mm(?:\^?2|²)|per\s+(?:um|µm|μm)(?:\^?2|²)|"
    r"\(\s*(?:um|µm|μm|mm|px|%|kv|ms)(?:\^?2|²)?\s*\)|\bin\s+(?:um|µm|μm|mm|px|pixels|percent)"
    r"(?:\^?2|²)?\b)",
    re.I,
)
_LABEL_BEFORE = re.compile(r"\b(image|figure|fig\.|table|case|stage|grade|class|score)\s*#?$", re.I)
_OF_BEFORE = re.compile(r"(?:\d\s?%?|\bout)\s+of\s+(?:the\s+|about\s+|approximately\s+)?$", re.I)
_HSCORE_BEFORE = re.compile(r"h[- ]?score\s*(is|=|of|:)?\s*$", re.I)
_NUM = re.compile(
    r"(?<![\w.\-+/^²])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w+]|\.\d)"
)


def _canon_unit(raw: str) -> str:
    raw = raw.strip()
    for pattern, unit in _UNIT_PATTERNS:
        if re.fullmatch(pattern, raw, re.I) or re.match(pattern, raw, re.I):
            return unit
    return ""


# -- quantities ---------------------------------------------------------------------------

_TERMS: dict[str, tuple[str, ...]] = {
    "1+": ("1+", "weak", "weakly"), "2+": ("2+", "moderate", "moderately"),
    "3+": ("3+", "strong", "strongly"), "hscore": ("h-score", "h score", "hscore", "h_score"),
    "density": ("density", "per mm", "/mm", "per_mm", "_mm2", "per square mm", "per square milli"),
    "area": ("area",), "diameter": ("diameter",), "perimeter": ("perimeter",),
    "circularity": ("circularity",), "eccentricity": ("eccentricity",),
    "kvp": ("kvp", "tube voltage", "kilovolt"), "exposure": ("exposure", "mas"),
    "current": ("tube current",), "thickness": ("thickness", " thick "),
    "gap": ("spacing between slices", "slice spacing", "slice gap", "between slices"),
    "spacing": ("spacing", "pixel size", "voxel size", "mpp", "resolution", "size of a pixel",
                "size of each pixel", "pixel's size", "pixel dimensions", "voxel dimensions"),
    "matrix": ("matrix", " rows", " columns", " row ", " column "),
    "slices": ("slices", "frames", " frame"), "bits": ("bit depth", " bits"),
    "tr": ("repetition time", " tr "), "te": ("echo time", " te "),
    "field": ("field strength", "tesla"), "confluence": ("confluence",),
    "focus": ("focus", "blur", "sharp"), "similarity": ("similarity",),
    "intensity": ("intensity",), "positive": ("positive", "positivity", "dab+"),
    "count": ("count", "number of", "nuclei", "cells", "objects"),
}  # fmt: skip
# A name that says "this number is X" rules out numbers of another quantity.
_EXCLUSIVE = {
    "1+", "2+", "3+", "hscore", "density", "area", "diameter", "kvp", "thickness", "gap",
    "spacing", "matrix", "slices", "bits", "focus",
}  # fmt: skip
# The units a named quantity can have: "29.9 cm² thick" is no thickness.
_FAMILIES = {
    "thickness": {"length"}, "gap": {"length"}, "spacing": {"length", "px"},
    "diameter": {"length", "px"}, "perimeter": {"length", "px"}, "area": {"area", "px2"},
    "density": {"density"}, "kvp": {"voltage"}, "current": {"current"},
    "tr": {"time"}, "te": {"time"}, "field": {"field"},
}  # fmt: skip
# Words that make a number one of a part: "308 are DAB-positive" is not "308 nuclei".
_SUBSET = {"positive", "1+", "2+", "3+"}


def _terms(text: str) -> set[str]:
    t = f" {fold(text).replace('_', ' ')} "
    found = {k for k, words in _TERMS.items() if any(w in t for w in words)}
    if found & {"1+", "2+", "3+"}:
        found.discard("positive")
    if "gap" in found:
        found.discard("spacing")  # "spacing between slices" is no pixel spacing
    return found


@dataclass
class Quantity:
    value: float
    unit: str
    decimals: int
    terms: set[str] = field(default_factory=set)  # what the number is said to be
    clause: set[str] = field(default_factory=set)  # the quantity words of its whole clause


def _parse_number(raw: str) -> tuple[float, int]:
    raw = raw.replace(",", "").replace("−", "-")
    mantissa = re.split(r"[eE]", raw)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return float(raw), decimals


def quantities(text: str) -> list[Quantity]:
    """Every number in ``text`` with its unit and the quantity words of its clause."""
    text = CITE.sub(" ", text)
    out: list[Quantity] = []
    last_end = 0
    for m in _NUM.finditer(text):
        start = m.start()
        # "3+" is an intensity class, "image 2" and "[1]" are not quantities
        if re.match(r"\s?\+", text[m.end() : m.end() + 2]):
            continue
        before = text[max(0, start - 40) : start]
        if _LABEL_BEFORE.search(before) and not _HSCORE_BEFORE.search(before):
            continue
        value, decimals = _parse_number(m.group(0))
        after = _UNIT_AFTER.match(text, m.end())
        unit = _canon_unit(after.group(1)) if after else ""
        clause_start = max(last_end, *(text.rfind(c, 0, start) + 1 for c in ",;:()\n"))
        clause = text[clause_start:start]
        if not unit:
            pre = list(_UNIT_BEFORE.finditer(clause))
            if pre:
                unit = _canon_unit(
                    re.sub(r"^(per|in|\()\s*|\s*\)$", "", pre[-1].group(1), flags=re.I)
                )
                if pre[-1].group(1).lower().startswith(("per", "/")):
                    unit = "per " + unit if not unit.startswith("per") else unit
        tail_end = after.end() if after else m.end()
        tail = text[tail_end : tail_end + 30].split(",")[0].split(";")[0]
        terms = _terms(clause + " " + " ".join(tail.split()[:3]))
        ends = [i for i in (text.find(c, tail_end) for c in ",;:\n") if i >= 0]
        whole = _terms(text[clause_start : min(ends, default=len(text))])
        if _OF_BEFORE.search(before):  # "308 of 483 cells are positive": 483 is all of them
            terms, whole = (terms - _SUBSET) | {"whole"}, whole - _SUBSET
        out.append(Quantity(value, unit if unit in _UNITS else "", decimals, terms, whole))
        last_end = tail_end
    return out


def _close(a: float, b: float, decimals: int) -> bool:
    if math.isclose(a, b, rel_tol=5e-3, abs_tol=0.5 * 10**-decimals + 1e-12):
        return True
    if decimals == 0 and a and not float(b).is_integer():  # "140" for 138.6 (a count is exact)
        zeros = len(str(int(abs(a)))) - len(str(int(abs(a))).rstrip("0"))
        return zeros > 0 and round(b, -zeros) == a
    return False


def _candidates(q: Quantity, s: Quantity, pixel_um: list[float]) -> list[float]:
    """The sentence's value ``q`` expressed in the source unit of ``s``, where it converts."""
    fq, kq = _UNITS.get(q.unit, ("plain", 1.0))
    fs, ks = _UNITS.get(s.unit, ("plain", 1.0))
    if not q.unit or not s.unit:
        if q.unit == "%" and not s.unit:
            return [q.value / 100]  # 57% of a fraction 0.57
        if s.unit == "%" and not q.unit and q.value <= 1:
            return [q.value * 100]
        return [q.value]
    if fq == fs:
        return [q.value * kq / ks]
    out = []
    for ps in pixel_um:  # px -> um with the sources' pixel size
        if fs == "px" and fq == "length":
            out.append(q.value * kq / ps)
        if fs == "px2" and fq == "area":
            out.append(q.value * kq / ps**2)
        if fq == "px" and fs == "length":
            out.append(q.value * ps / ks)
        if fq == "px2" and fs == "area":
            out.append(q.value * ps**2 / ks)
    return out


def _of_another_part(q: Quantity, s: Quantity) -> bool:
    """``s`` counts a part (DAB-positive, 1+/2+/3+) that ``q``'s clause does not name, or the
    other way round: "308 (64%) are DAB-positive" does not support "there are 308 nuclei",
    nor "483 nuclei" "483 positive cells"."""
    part = s.terms & _SUBSET
    if part and q.terms and not (part & (q.clause | q.terms)):
        return True
    said = q.terms & _SUBSET
    return bool(said and s.terms and not (said & s.terms))


def _unit_fits(q: Quantity) -> bool:
    """Whether ``q``'s unit can be that of the quantity its clause names."""
    family = _UNITS.get(q.unit, ("plain", 1.0))[0] if q.unit and q.unit != "%" else None
    return family is None or all(family in _FAMILIES[t] for t in q.terms & _FAMILIES.keys())


def supports_number(q: Quantity, support: list[Quantity], pixel_um: list[float]) -> bool:
    if not _unit_fits(q):
        return False
    for s in support:
        # "14 rows" against "14% of the image", "194 per mm^2" against "194 nuclei": a number
        # with a unit and one without are the same only when named alike (or 57% and 0.57)
        fraction = q.unit == "%" and not s.unit and s.value <= 1
        if bool(q.unit) != bool(s.unit) and not (q.terms & s.terms) and not fraction:
            continue
        named = q.terms & _EXCLUSIVE
        if named and s.terms and not (named & s.terms):
            continue  # "3+ is 57%" against "positive 57%": another quantity
        if _of_another_part(q, s):
            continue
        for v in _candidates(q, s, pixel_um):
            decimals = q.decimals
            if q.unit != s.unit and q.unit and s.unit:
                decimals = max(decimals, s.decimals)
            if _close(v, s.value, decimals if q.unit == s.unit or not q.unit else 6) or (
                q.unit != s.unit and math.isclose(v, s.value, rel_tol=0.02)
            ):
                return True
    return False


# -- what a source says ---------------------------------------------------------------------


@dataclass
class Support:
    text: str  # folded
    quantities: list[Quantity]
    pixel_um: list[float]
    sentences: list[str]
    # What the sources state, without a vision answer's title: that quotes the question
    evidence: str = ""


def source_support(sources: list[Source], wording: dict[int, str] | None = None) -> Support:
    """What ``sources`` say: their text and facts, and ``wording[n]``, the tools' own sentences
    citing source n (a rendering of the same typed output, e.g. the measurement's warnings)."""
    parts: list[str] = []
    evidence: list[str] = []
    qs: list[Quantity] = []
    pixel: list[float] = []
    for s in sources:
        fact_text = []
        for f in s.facts:
            label = f"{f.label or f.name.replace('_', ' ')}"
            values = f.value if isinstance(f.value, list) else [f.value]
            for v in values:
                if isinstance(v, bool) or v is None:
                    continue
                if isinstance(v, int | float):
                    unit = _canon_unit(f.unit) if f.unit else ""
                    qs.append(Quantity(float(v), unit, 6, _terms(f"{f.name} {label}")))
                    if f.unit == "%" and v > 1:
                        qs.append(Quantity(float(v) / 100, "", 6, _terms(f"{f.name} {label}")))
                    if _terms(f.name + " " + label) & {"spacing"} and unit in ("um", "mm"):
                        pixel.append(float(v) * (1000.0 if unit == "mm" else 1.0))
            fact_text.append(f"{label} {f.text} {f.value} {f.unit}")
        # "; " between facts: one fact's words must not name the next one's number
        text = "; ".join([s.title, s.snippet, *fact_text, " ".join(s.authors), str(s.year or "")])
        text += f" {s.id} {s.venue or ''} {s.kind}"
        own = (wording or {}).get(s.n or 0, "")
        if own:
            text += " " + CITE.sub(" ", own)
        parts.append(text)
        # A vision answer's title, key and the tools' wording quote the question: its evidence
        # is what the model said
        evidence.append("; ".join([s.snippet, *fact_text]) if s.kind == "vision" else text)
        for piece in re.split(r"[,;]\s+", f"{s.snippet}; {s.title}"):
            # "mean area = 139 px^2": the name before the number says what it is
            name, sep, value = piece.rpartition("=") if "=" in piece else piece.rpartition(": ")
            if sep and name.strip():
                for q in quantities(value):
                    q.terms = _terms(name) | (q.terms & _EXCLUSIVE)
                    qs.append(q)
        qs += quantities(text)
        for m in re.finditer(
            r"pixel (?:size|spacing)[^\d]{0,20}(\d+(?:\.\d+)?)\s*(um|µm|μm|mm)", text, re.I
        ):
            pixel.append(float(m.group(1)) * (1000.0 if m.group(2) == "mm" else 1.0))
    joined = " ".join(parts)
    sentences = [x for p in parts for x in re.split(r"(?<=[.!?;])\s+", p) if x.strip()]
    return Support(fold(joined), qs, pixel, sentences, fold(" ".join(evidence)))


# -- entities, polarity, words ------------------------------------------------------------

_STARTERS_WORDS = (
    "the this these those a an in it its there according both no each one all most some "
    "however also their we they he she based from with for on at by as of to and but or "
    "if when measurement vision similar literature sources source image images papers "
    "paper studies study overall here yes note nothing only none neither several many few "
    "two three "
)
_STARTERS = frozenset(_STARTERS_WORDS.split())
_GENERIC = {
    "pubmed", "arxiv", "wikipedia", "web", "dab", "h&e", "he", "ihc", "ct", "mr", "mri", "cr",
    "dx", "us", "kv", "kvp", "mas", "ma", "hu", "ms", "um", "mm", "px", "ok", "i", "ii", "iii",
    "iv", "png", "tif", "tiff", "dcm", "nii", "jpeg", "jpg", "dicom", "nifti", "rgb", "faq",
}  # fmt: skip
_DRUG = re.compile(r"\w+(inib|tinib|zumab|ximab|umab|mab|platin|taxel|cillin|mycin|vir|statin)$")
_TOKEN = re.compile(r"[A-Za-zÀ-ÿ][\w&+\-/]*[\w+]|[A-Za-z]")
_NEG = re.compile(
    r"\b(no|not|none|never|neither|nor|without|absent|absence|lacks?|lacking|cannot|free of"
    r"|isn't|aren't|wasn't|weren't|doesn't|don't|didn't|fails? to|negative for)\b",
    re.I,
)
_STOP_WORDS = (
    "about above after again against also among an and any are around as at based be been "
    "being below between both but by can could did does doing during each few for from "
    "further had has have having here how into its itself just more most much near no nor "
    "not now of off on once only or other our out over own same several should since so "
    "some such than that the their them then there these they this those through thus to "
    "too under until upon very was were what when where which while who whom why will "
    "with within would yet image images shows show shown showed found finds find reported "
    "reports report according source sources study studies paper papers known describes "
    "described description answer answers approximately total overall given gives using "
    "used uses include includes including result results contains contain value values "
    "measured "
)
_STOP = frozenset(_STOP_WORDS.split())


def entities(sentence: str) -> list[str]:
    """Acronyms, gene and drug names, identifiers and capitalised terms of a sentence."""
    text = re.sub(r"\s+", " ", CITE.sub(" ", sentence))
    out = []
    for i, m in enumerate(_TOKEN.finditer(text)):
        tok = m.group(0).strip("-/+&")
        if len(tok) < 2 or tok.lower() in _GENERIC:
            continue
        has_digit = any(c.isdigit() for c in tok)
        upper = sum(c.isupper() for c in tok)
        first = i == 0 or text[: m.start()].rstrip().endswith((".", ":", "'", '"', "“", "("))
        if (
            (has_digit and upper)
            or upper >= 2
            or _DRUG.match(tok.lower())
            or (tok[0].isupper() and not first)
        ):
            out.append(tok)
    return out


def _key(word: str) -> str:
    return re.sub(r"[^\w]", "", fold(word))


def _stem(word: str) -> str:
    return word[:5]


def content_words(text: str) -> list[str]:
    words = re.findall(r"[a-zà-ÿ]{4,}", fold(CITE.sub(" ", text)))
    return [w for w in words if w not in _STOP]


def _negated(text: str) -> tuple[set[str], set[str]]:
    """(stems said under a negation, all stems) of a text: "not associated with survival"."""
    tokens = re.findall(r"[\w'’]+", fold(text))
    negated: set[str] = set()
    for i, tok in enumerate(tokens):
        if _NEG.fullmatch(tok) or (tok in {"free", "negative", "fails", "fail"}):
            negated |= {_stem(w) for w in tokens[i + 1 : i + 4] if len(w) >= 4 and w not in _STOP}
    return negated, {_stem(w) for w in tokens if len(w) >= 4 and w not in _STOP}


def _polarity_clash(sentence: str, support: Support) -> bool:
    """The sentence affirms what the closest source sentence negates, or negates what it
    affirms ("was associated" against "was not associated")."""
    words = {_stem(w) for w in content_words(sentence)}
    if len(words) < 2:
        return False
    best, best_overlap = None, 1
    for s in support.sentences:
        overlap = len(words & {_stem(w) for w in content_words(s)})
        if overlap > best_overlap:
            best, best_overlap = s, overlap
    if best is None:
        return False
    neg_s, all_s = _negated(CITE.sub("", sentence))
    neg_b, all_b = _negated(best)
    return bool((neg_b & (all_s - neg_s)) or (neg_s & (all_b - neg_b)))


# -- one sentence ---------------------------------------------------------------------------


def check(sentence: str, support: Support, question: str = "") -> str | None:
    """Why ``sentence`` is not supported by ``support``, or None when it is."""
    body = CITE.sub(" ", sentence)
    if len(body) > 20 and fold(body).strip(" .") in support.text:
        return None  # a verbatim quote of what it cites
    for q in quantities(body):
        if not supports_number(q, support.quantities, support.pixel_um):
            unit = f" {q.unit}" if q.unit else ""
            what = f" ({', '.join(sorted(q.terms & _EXCLUSIVE))})" if q.terms & _EXCLUSIVE else ""
            return f"the number {q.value:g}{unit}{what} is not in the cited source(s)"
    asked = fold(question)
    support_keys = re.sub(r"[^\w]", "", support.text)
    for ent in entities(body):
        k = _key(ent)
        if k and k not in support_keys and k not in re.sub(r"[^\w]", "", asked):
            return f"{ent!r} is not in the cited source(s)"
    if _polarity_clash(body, support):
        return "it negates what the cited source says (or affirms what it negates)"
    own = content_words(body)
    words = [w for w in own if w not in asked]
    if own and len(words) < 3 and not quantities(body):
        # The question said back as a claim ("The stain is brown" to "is the stain brown?"):
        # the source itself must say some of it, not only the question quoted in its title.
        stems = {_stem(w) for w in re.findall(r"[a-zà-ÿ]{4,}", support.evidence)}
        if not any(_stem(w) in stems for w in own):
            return "what it states is only in the question, not in the cited source(s)"
    if len(words) >= 3:
        stems = {_stem(w) for w in re.findall(r"[a-zà-ÿ]{4,}", support.text)}
        hit = sum(_stem(w) in stems for w in words)
        if hit / len(words) < 0.34:
            return "its words are not in the cited source(s)"
    return None


def _cites(text: str, numbers: set[int]) -> list[int]:
    return [n for n in cited_numbers(text) if n in numbers]


def _attach(
    sentence: str, sources: list[Source], question: str, wording: dict[int, str]
) -> int | None:
    """The one source that supports an uncited claim with a number or a named term."""
    body = CITE.sub(" ", sentence)
    if not quantities(body) and not entities(body):
        return None
    fits = [
        s.n for s in sources if s.n and check(body, source_support([s], wording), question) is None
    ]
    return fits[0] if len(fits) == 1 else None


def _with_citation(sentence: str, n: int) -> str:
    s = sentence.rstrip()
    if s and s[-1] in ".!?":
        return f"{s[:-1]} [{n}]{s[-1]}"
    return f"{s} [{n}]"


_DANGLING = re.compile(r"\s?\[\d[\d,\s–-]*(?![\d,\s–-]*\])")


def ground(
    text: str, sources: list[Source], *, question: str = "", extractive: str = ""
) -> tuple[str, list[str]]:
    """Keep the supported sentences of ``text`` (see the module docstring).

    ``extractive`` is the rule-based answer for the same sources (same numbering); it replaces
    what is dropped. Returns (text, warnings); ``citations.verify`` then renumbers.
    """
    text = _DANGLING.sub("", text)
    known = {s.n for s in sources if s.n}
    by_n = {s.n: s for s in sources}
    wording: dict[int, str] = {}
    for line in extractive.splitlines():
        for sentence in split_sentences(line):
            for n in set(cited_numbers(sentence)) & known:
                wording[n] = f"{wording.get(n, '')} {sentence}"
    warnings: list[str] = []
    dropped: list[tuple[str, list[int]]] = []
    lines: list[str] = []
    kept_cites: set[int] = set()
    claims = 0
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("Note:", "#", "---")):
            lines.append(line)
            continue
        kept = []
        for sentence in split_sentences(line):
            if not re.search(r"\w", CITE.sub("", sentence)):
                continue
            nums = _cites(sentence, known)
            if not nums:
                n = _attach(sentence, sources, question, wording)
                if n is not None:
                    warnings.append(
                        f"attached an uncited claim to source [{n}]: {_short(sentence)}"
                    )
                    sentence, nums = _with_citation(sentence, n), [n]
                else:
                    kept.append(sentence)  # citations.verify removes it, with its warning
                    continue
            why = check(sentence, source_support([by_n[n] for n in nums], wording), question)
            if why is None:
                kept.append(sentence)
                kept_cites.update(nums)
                claims += 1
            else:
                dropped.append((sentence, nums))
                warnings.append(f"left out an unsupported claim ({why}): {_short(sentence)}")
        if kept:
            lines.append(" ".join(kept))
    if not dropped:
        return "\n".join(lines).strip(), warnings
    is_rules = extractive.strip() == text.strip()
    replacement: list[str] = []
    if extractive and not is_rules:
        lost = {n for _, nums in dropped for n in nums} - kept_cites
        for line in extractive.splitlines():
            for sentence in split_sentences(line):
                cites = set(_cites(sentence, known))
                if cites & lost and sentence not in replacement:
                    replacement.append(sentence)
    if claims == 0 and extractive and not is_rules:
        warnings.append(
            "no sentence of the model's answer was supported by its sources; "
            "gave the rule-based answer instead"
        )
        return extractive.strip(), warnings
    note = REPLACED_NOTE.format(
        n=len(dropped), replaced=" and replaced by the tools' own wording" if replacement else ""
    )
    body = "\n".join(lines).strip()
    if replacement:
        body = (body + "\n" + " ".join(replacement)).strip()
    return f"{body}\n{note}".strip(), warnings


def complete(text: str, extractive: str) -> tuple[str, int]:
    """``text`` (a model's grounded answer) with the sentences of ``extractive`` (the tools'
    answer to the same question, built around the facts asked) whose facts it does not carry:
    a number it does not state, or most of their words. An answer must carry the fact that was
    asked, and a small model often leaves it out. Returns (text, how many were added)."""
    if not extractive.strip() or extractive.lstrip().startswith("Note:"):
        return text, 0
    said = quantities(text)
    stems = {_stem(w) for w in content_words(text)}
    added: list[str] = []
    for line in extractive.splitlines():
        for sentence in split_sentences(line):
            if not cited_numbers(sentence) or sentence.lstrip().startswith("Note:"):
                continue
            body = CITE.sub(" ", sentence)
            numbers_said = all(supports_number(q, said, []) for q in quantities(body))
            words = {_stem(w) for w in content_words(body)}
            words_said = not words or len(words & stems) / len(words) >= 0.5
            if not (numbers_said and words_said) and sentence not in added:
                added.append(sentence)
    if not added:
        return text, 0
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("Note:")]
    notes = [ln for ln in text.splitlines() if ln.lstrip().startswith("Note:")]
    return "\n".join([*lines, " ".join(added), *notes]).strip(), len(added)


def _short(sentence: str) -> str:
    s = " ".join(CITE.sub("", sentence).split())
    return repr(s if len(s) <= 80 else s[:77] + "...")


def tidy_warnings(warnings: list[str], *, limit: int = 12, width: int = 240) -> list[str]:
    """Warnings once each, none longer than ``width``, at most ``limit`` (and how many more)."""
    out: list[str] = []
    for w in warnings:
        w = re.sub(r"\[(\d+(?:, \d+){5,})\]", lambda m: f"[{m.group(1).count(',') + 1} numbers]", w)
        w = w if len(w) <= width else w[: width - 3] + "..."
        if w not in out:
            out.append(w)
    if len(out) > limit:
        out = [*out[: limit - 1], f"... and {len(out) - limit + 1} more warnings"]
    return out
