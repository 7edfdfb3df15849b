"""What a question asks for, by its words: facts, identifiers, a stated pixel size.

``asked_facts`` names the facts (``Fact.name`` of the tools' facts) a question asks for, most
specific first; ``FACT_TOOL`` says which tool produces each. ``asks_identifier`` catches
questions about the patient's identity, which are answered with a refusal, never a value.
``stated_pixel_size`` reads "the pixel size is 0.5 micrometres", "0.5 um/px", "pixel spacing
0.25 mm" from the question.
"""

from __future__ import annotations

import re

from agent.tools.base import PixelSize

# fact name -> (tool, pattern). Order matters: the first match leads the answer.
_FACTS: list[tuple[str, str, str]] = [
    ("intensity_bins_3", "measure", r"\b3\s*\+|strong(ly)?\b.{0,30}\b(positive|stain)"),
    ("intensity_bins_2", "measure", r"\b2\s*\+|moderate(ly)?\b.{0,30}\b(positive|stain)"),
    ("intensity_bins_1", "measure", r"\b1\s*\+|weak(ly)?\b.{0,30}\b(positive|stain)"),
    ("h_score", "measure", r"\bh[- ]?score|histoscore|staining score|intensity score"),
    (
        "positive",
        "measure",
        r"\bpositiv\w*|\bdab\b|immunoreactiv\w*|\bstain(ed|ing)? cells\b|"
        r"\bexpress(ing|ion)\b",
    ),
    (
        "density",
        "measure",
        r"\bdensity|densities|per (square )?(mm|millimet|µm|um|micro)\w*|"
        r"/\s*mm\s*(2|²|\^2)|cellularity",
    ),
    (
        "count",
        "measure",
        r"\bhow many|\bcount\w*|\bnumber of|\bnumbers? of (cells|nuclei)|"
        r"\bquantif\w*|\bhow much (cells|nuclei)",
    ),
    ("diameter", "measure", r"\bdiameter|\bwide\b|\bwidth of (the )?(cells?|nucle\w+)"),
    (
        "area",
        "measure",
        r"\barea\b|\bsize of (the )?(cells?|nucle\w+|objects?)|how (big|large)|"
        r"\b(cell|nuclear|nucleus) size|\bsized?\b(?!.{0,20}(pixel|voxel))",
    ),
    ("circularity", "measure", r"\bcircular\w*|\bround(ness|ed)?\b|\bshape"),
    ("confluence", "measure", r"\bconfluen\w*|\bcoverage|\bcovered\b"),
    ("focus", "measure", r"\bfocus\w*|\bblur\w*|\bsharp\w*|\bimage quality|\bquality of the image"),
    (
        "tissue_fraction",
        "measure",
        r"\btissue (fraction|area|cover\w*)|how much tissue|"
        r"covered (by|with) tissue",
    ),
    ("eosin_fraction", "measure", r"\beosin"),
    (
        "mean_intensity",
        "measure",
        r"\bhounsfield|\bHU\b|\bmean (value|intensity|signal|density "
        r"in hu)|\battenuation|\bintensit(y|ies)\b|\bbrightness",
    ),
    ("body_area", "measure", r"\bbody (area|cross[- ]section)|cross[- ]sectional area"),
    ("window", "measure", r"\bwindow(ing)?\b|\bwindow (level|width|centre|center)"),
    (
        "kvp",
        "header",
        r"\bkvp\b|\bkv\b|\btube voltage|\bpeak kilovolt\w*|\bkilovolt\w*|"
        r"\bvoltage",
    ),
    ("tube_current", "header", r"\btube current|\bma\b|\bmilliamp\w*"),
    ("exposure", "header", r"\bexposure\b(?! time)|\bmas\b|\bdose"),
    ("exposure_time", "header", r"\bexposure time"),
    ("slice_thickness", "header", r"\bslice thickness|\bthick(ness)?\b|\bslice width"),
    ("repetition_time", "header", r"\brepetition time|\bTR\b|\bTR/TE|\bsequence (timing|param)"),
    ("echo_time", "header", r"\becho time|\bTE\b|\bTR/TE|\bsequence (timing|param)"),
    (
        "field_strength",
        "header",
        r"\bfield strength|\btesla\b|\b\d(\.\d)?\s*T\b|\bmagnetic field|\bmagnet strength",
    ),
    ("flip_angle", "header", r"\bflip angle"),
    ("scanning_sequence", "header", r"\b(scanning|pulse) sequence|\bspin[- ]echo|\bgradient echo"),
    (
        "voxel_size",
        "header",
        r"\bvoxels?\b.{0,10}(size|dimension|spacing)|\bvoxel size|"
        r"\bsize of (a|the|each) voxel",
    ),
    (
        "pixel_spacing",
        "header",
        r"\bpixel spacing|\bin[- ]plane (resolution|spacing)|\bspacing\b|"
        r"\bmm per pixel|\bspatial resolution",
    ),
    (
        "pixel_size",
        "header",
        r"\bpixel size|\bmicrons? per pixel|\bµm per pixel|\bum per pixel|"
        r"\bmpp\b|\bmicrometres? per pixel",
    ),
    ("field_of_view", "header", r"\bfield of view|\bfov\b"),
    ("volume_shape", "header", r"\bvolume (dimension|shape|size)|\bdimensions of the volume"),
    ("slices", "header", r"\bhow many slices|\bnumber of slices|\bslices\b"),
    ("frames", "header", r"\bhow many frames|\bnumber of frames|\bframes\b"),
    (
        "matrix",
        "header",
        r"\bmatrix|\bresolution in pixels|\bimage size|\bdimensions?\b|"
        r"\bhow many (pixels|rows|columns)",
    ),
    ("bit_depth", "header", r"\bbit[- ]?depth|\bbits (stored|per pixel)|\bhow many bits"),
    ("channels", "header", r"\bchannels?\b"),
    ("objective", "header", r"\bobjective|\bmagnification"),
    ("stain", "header", r"\bwhich stain|\bwhat stain|\bstain(ing)? (was|is) used"),
    (
        "body_part",
        "header",
        r"\bbody part|\bwhich (organ|region|anatomy)|\bwhat (body part|"
        r"anatomy|region)|\banatomical region",
    ),
    (
        "modality",
        "header",
        r"\bmodality|\bwhat kind of (image|scan)|\bwhat type of (image|scan)|"
        r"\bwhich (imaging )?technique|\bimaging technique",
    ),
    ("manufacturer", "header", r"\bmanufacturer|\bvendor|\bwhich scanner|\bscanner model"),
    ("scanner_model", "header", r"\bwhich scanner|\bscanner model|\bwhich (machine|model)"),
]
FACT_PATTERNS = [(name, tool, re.compile(p, re.I)) for name, tool, p in _FACTS]
FACT_TOOL = {name: tool for name, tool, _ in _FACTS}

# A question for the papers, unless it points at the image ("... about this staining").
LITERATURE = re.compile(
    r"\b(what is known|known about|literature|papers?|stud(y|ies) (say|show|report)|"
    r"publications?|evidence (for|on|about)|research (on|about|into)|pubmed|arxiv|"
    r"review articles?|guidelines?)\b",
    re.I,
)
POINTS_AT_IMAGE = re.compile(r"\b(this|these|here|in it|the image|the scan|the slide)\b", re.I)

IDENTIFIER = re.compile(
    r"\b(patient'?s? (name|id\b|identifier|number|address|phone|birth|date of birth|dob|age|"
    r"initials|mrn)|name of the patient|who is (the|this) patient|whose (image|scan|x-?ray)|"
    r"date of birth|birth ?date|\bdob\b|\bmrn\b|medical record (number|locator)|"
    r"accession (number|no)|social security|insurance number|home address|"
    r"referring (physician|doctor)|institution name|which (hospital|institution)|"
    r"(study|acquisition|scan) date|when was (this|the) (scan|image|study) (taken|acquired|done)|"
    r"patient('?s)? identity|identify the patient)",
    re.I,
)

WITHHELD_NOTE = (
    "Note: patient identifiers (name, IDs, birth date, dates, institution) are withheld: "
    "litevlm keeps them apart from the image and never shows or sends them. Ask about the "
    "image's content, acquisition or geometry instead."
)

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_UM = r"(?:µm|μm|um|microns?|micrometers?|micrometres?|microm)"
_MM = r"(?:mm|millimet(?:er|re)s?)"
_NM = r"(?:nm|nanomet(?:er|re)s?)"
_PIXEL_WORDS = r"(?:pixel|px|voxel)\s*(?:size|spacing|pitch|resolution)?"
_STATED = [
    re.compile(
        rf"{_PIXEL_WORDS}\s*(?:is|of|=|:|was|equals)?\s*(?:about\s*)?{_NUMBER}\s*"
        rf"({_UM}|{_MM}|{_NM})",
        re.I,
    ),
    re.compile(rf"{_NUMBER}\s*({_UM}|{_MM}|{_NM})\s*(?:/|per)\s*(?:pixel|px)\b", re.I),
    re.compile(rf"{_NUMBER}\s*({_UM}|{_MM}|{_NM})\s+pixels?\b", re.I),
    re.compile(rf"\bmpp\s*(?:is|of|=|:)?\s*{_NUMBER}()", re.I),
]


def asked_facts(question: str) -> list[str]:
    """Fact names the question asks for, in the order the patterns rank them."""
    q = _without_stated_pixel_size(question)
    return [name for name, _, pat in FACT_PATTERNS if pat.search(q)]


def asks_identifier(question: str) -> bool:
    return bool(IDENTIFIER.search(question))


def stated_pixel_size(question: str) -> PixelSize | None:
    """A pixel size stated in the question, in micrometres (None when there is none)."""
    for pat in _STATED:
        m = pat.search(question)
        if not m:
            continue
        value = float(m.group(1).replace(",", "."))
        unit = (m.group(2) or "um").lower()
        if unit.startswith(("mm", "milli")):
            value *= 1000.0
        elif unit.startswith(("nm", "nano")):
            value /= 1000.0
        if value > 0:
            return PixelSize(um=value, source="stated in the question")
    return None


def _without_stated_pixel_size(question: str) -> str:
    """The question with "pixel size is 0.5 um" removed: stating it is not asking for it."""
    q = question
    for pat in _STATED:
        q = pat.sub(" ", q)
    return q


# The router's fact names (agent.routing.FACTS) -> the names of the tools' facts they cover.
ROUTER_FACTS: dict[str, tuple[str, ...]] = {
    "count": ("count",),
    "fraction_positive": ("positive", "positive_nuclei"),
    "h_score": ("h_score",),
    "intensity_grades": ("intensity_bins_3", "intensity_bins_2", "intensity_bins_1", "h_score"),
    "intensity": ("mean_intensity", "mean_dab"),
    "area": ("area",),
    "diameter": ("diameter",),
    "shape": ("circularity",),
    "density": ("density",),
    "confluence": ("confluence",),
    "focus": ("focus",),
    "quality": ("focus",),
    "kvp": ("kvp",),
    "exposure": ("exposure", "exposure_time"),
    "tube_current": ("tube_current",),
    "slice_thickness": ("slice_thickness", "slice_spacing"),
    "tr_te": ("repetition_time", "echo_time", "inversion_time", "flip_angle"),
    "field_strength": ("field_strength",),
    "sequence": ("scanning_sequence",),
    "contrast": ("contrast_agent",),
    "pixel_spacing": ("pixel_spacing", "pixel_size"),
    "voxel_size": ("voxel_size",),
    "field_of_view": ("field_of_view",),
    "matrix": ("matrix", "volume_shape"),
    "frames": ("frames", "slices"),
    "mpp": ("pixel_size", "pixel_spacing"),
    "objective": ("objective",),
    "channels": ("channels",),
    "bit_depth": ("bit_depth",),
    "modality": ("modality",),
    "stain": ("stain",),
    "body_part": ("body_part",),
}
# Asked of a patient, not of an image: withheld like identifiers (the header keeps neither).
WITHHELD_FACTS = {"patient_age"}


def facts_for(router_facts: list[str], question: str, tools: list[str]) -> list[str]:
    """The tools' fact names a question asks for: the words' own (most specific, e.g. "3+")
    among the chosen tools, then what the router's facts cover."""
    out = [f for f in asked_facts(question) if FACT_TOOL[f] in tools]
    specific_bins = any(f.startswith("intensity_bins_") for f in out)
    for rf in router_facts:
        for f in ROUTER_FACTS.get(rf, ()):
            if specific_bins and f.startswith("intensity_bins_"):
                continue
            if f not in out:
                out.append(f)
    return out
