"""Retrieved text is inert: what tools bring back cannot steer the model or the answer.

Abstracts, web pages, case captions and even the vision model's text are data. ``inert`` makes
one such text safe to show and to prompt with, before the chat model sees it and before rules
mode quotes it:

- markup goes (tags, scripts, entities unescaped twice), and so do zero-width and bidi controls;
- citation markers (``[1]``, ``[12``, ``［３］``) become parentheses, so that ``[n]`` in an answer
  only ever comes from the answer's writer;
- every double quote becomes ``'``, so a title cannot close the quotation rules mode puts
  around it;
- role markers (``system:``, ``<|im_start|>``, ``[INST]``, ``### Instruction``) and
  instructions to the assistant ("ignore all previous instructions", "reply only with",
  "Ignoriere alle vorherigen Anweisungen", "忽略之前的指令"...), also hidden behind homoglyphs,
  zero-width characters, HTML entities, URL-encoding or base64, withhold the WHOLE field: text
  that tries to instruct is not evidence, and its payload may sit anywhere around it;
- base64 / URL-encoded payloads are removed even without an instruction inside;
- statements about an individual's diagnosis or treatment are left out sentence by sentence.

``clinical_advice`` is the last filter on an answer's sentences: an answer never carries a
diagnosis of a person or a treatment recommendation, whatever the sources say (research use
only). Detection runs on a folded copy (NFKC, homoglyphs mapped to Latin, accents dropped); the
text shown keeps its own characters.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

WITHHELD = "(text withheld: it contained instructions to the assistant)"
ENCODED = "(encoded text removed)"
CLINICAL = "(statement about a patient's diagnosis or treatment left out)"

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2069\u206a-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SCRIPT = re.compile(r"<(script|style|iframe|noscript)\b.*?</\1\s*>", re.S | re.I)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][\w:-]*(?:\s[^<>]{0,2000})?/?>", re.S)
_QUOTES = re.compile('["“”„‟«»〝〞〟＂「」『』]')
_OPEN, _CLOSE = "[［【〔⟦", "]］】〕⟧"
_BRACKETS = str.maketrans({**dict.fromkeys(_OPEN, "("), **dict.fromkeys(_CLOSE, ")")})
_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_URLENC = re.compile(r"(?:%[0-9A-Fa-f]{2}){3,}(?:[A-Za-z0-9._~-]*(?:%[0-9A-Fa-f]{2})+)*")

# Latin look-alikes (Cyrillic, Greek, IPA) folded for detection only.
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁɡոհօԛԝһАВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεικνορτυχ",
    "aeopcyxijsdgnhoqwhABEKMHOPCTXIJSABEZHIKMNOPTYXaeikvoptux",
)

# Role markers and chat-template tokens: never part of an abstract.
_ROLE = re.compile(
    r"<\|[a-z_ ]{2,20}\|>|\[/?inst\]|<</?sys>>|</?(system|assistant|user|tool)>|"
    r"#{2,}\s*(instruction|system|response|assistant|user)s?\b|"
    r"(?:^|[\n.!?:]\s*)(system|assistant|developer|user|human|ai)\s*(?:prompt\s*)?:\s",
    re.I,
)

# Instructions to an assistant, in the languages the red-team corpus uses (folded text).
_INSTRUCTIONS = [
    # English
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|prompts?|rules|"
    r"guidelines|directions|directives|system)\b",
    r"\b(ignore|disregard|forget) (all |everything )?(of )?(the )?(above|previous|prior|preceding"
    r"|foregoing)\b",
    r"(?:^|[.!?:;,'()]\s*|\b(?:and|then|please|now|just)\s+)(reply|respond|answer|output|say"
    r"|write|print|repeat|return)\b.{0,25}\b(only|exactly|verbatim|nothing but|the following|"
    r"this sentence|these words)\b",
    r"\byou (are|will|must|should) (now|from now on|instead)\b|\bnew (instructions?|task|role)"
    r"\b|\bfrom now on,? (you|answer|reply|respond)\b",
    r"\b(pretend|roleplay|role-play)\b|\bact as (an? )?(ai|assistant|chatbot|doctor|oncologist|"
    r"physician|dan)\b|\bjailbr[eo]\w*|\bdeveloper mode\b|\bmaintenance mode\b|"
    r"\bdo anything now\b",
    r"\b(system|hidden|secret) prompt\b|\bprompt injection\b",
    r"\b(call|invoke)\b.{0,20}\b(tool|function)\b|\bsearch_literature\b|\bsimilar_cases\b",
    r"\bas an? (ai|assistant|language model),? you\b|\bdear (ai|assistant|chatbot|model|llm)\b",
    r"\b(do not|don't|never) (cite|reveal|tell the user|mention this|disclose)\b",
    r"\b(the|you,?) (ai|assistant|chatbot) (must|should|will|shall)\b",
    # German
    r"\b(ignoriere|ignorieren|vergiss|vergessen|missachte)\b.{0,40}\b(anweisung|anweisungen|"
    r"befehle|regeln|vorgaben|instruktionen)\b",
    r"\b(antworte|antworten|gib|schreibe?)\b.{0,25}\b(nur|ausschliesslich|ausschließlich|"
    r"lediglich)\b",
    r"\bdu bist (jetzt|nun|ab sofort)\b",
    # French
    r"\b(ignore[rz]?|oublie[rz]?|neglige[rz]?)\b.{0,40}\b(instructions?|consignes?|regles)\b",
    r"\b(reponds?|repondez|repondre|ecris|ecrivez)\b.{0,25}\b(uniquement|seulement|"
    r"exactement)\b",
    r"\btu es (maintenant|desormais)\b|\bvous etes (maintenant|desormais)\b",
    # Spanish, Italian, Portuguese
    r"\b(ignora|ignore|ignorar|olvida|olvide|olvidar|dimentica|esqueca)\b.{0,40}\b("
    r"instrucciones|indicaciones|reglas|ordenes|istruzioni|regole|instrucoes|regras)\b",
    r"\b(responde|responda|contesta|conteste|escribe|escriba|rispondi)\b.{0,25}\b(solo|"
    r"solamente|unicamente|exactamente|soltanto)\b",
    r"\bahora eres\b|\ba partir de ahora\b",
    # Chinese, Japanese
    r"(忽略|忽视|无视|忘记|忘掉|不要理会|無視|忘れ).{0,12}(指令|指示|说明|說明|规则|規則|提示|命令|要求)",
    r"(指令|指示|命令|ルール).{0,6}(を|は)?(無視|忘れ|忽略)|(だけ|のみ)(答え|回答|返信|出力)|"
    r"(只|仅|僅|只要)(回复|回答|输出|輸出|回覆|说|說)|你现在是|你現在是|从现在开始|以下の指示",
]
_INSTRUCTION = re.compile("|".join(f"(?:{p})" for p in _INSTRUCTIONS), re.I | re.S)

# A person's diagnosis or a treatment recommendation (folded text, several languages).
_CLINICALS = [
    r"\b(the|this|your|our|that) (patient|subject|person|individual|man|woman|child|boy|girl)"
    r"(?!['’]s)\b.{0,40}\b(has|have|had|is|was|suffers|presents with|shows signs|needs|must"
    r"|should|will die)\b",
    r"\byou (have|may have|probably have|likely have|suffer from|are suffering from) (a |an )?"
    r"[\w-]*(cancer|carcinoma|tumou?r|metasta|disease|infection|lesion|malignan|syndrome|oma)",
    r"\b(the|a|final|likely|probable|definitive|differential|my|your) diagnosis (is|was|would"
    r" be|here|of this|:)",
    r"\b(he|she|the patient|this patient|the subject|this case|this lesion|this tumou?r|it) (is"
    r"|was|has been) (diagnosed|confirmed)\b",
    r"\b(confirms?|proves?|establish(es)?) (the |a )?(diagnosis|malignancy|cancer|carcinoma|"
    r"metasta\w*|tumou?r)\b",
    r"\b(should|must|needs? to|ought to|has to|have to) (immediately |urgently |now |promptly )?"
    r"(start|begin|commence|initiate|receive|undergo|be treated|be given|be started|be referred"
    r"|discontinue|have surgery|be operated)\b",
    r"\b(recommend(s|ed|ing)?|advise[sd]?|suggest(s|ed)?|prescribe[sd]?) (that )?(the patient|"
    r"him|her|them|you|starting|immediate|urgent|chemo\w*|radiotherap\w*|radiation|surgery|"
    r"treatment|therapy|resection|a biopsy|a course)\b",
    r"\b(start|begin|initiate|commence) (chemo\w*|radiotherap\w*|immunotherap\w*|treatment|"
    r"therapy)\b",
    r"\btreat (it|him|her|them|the patient|this patient|this) with\b",
    r"\b(prescribe|administer|give) \d+\s*(mg|ml|g|iu)\b",
    # German
    r"\b(der|die|dieser|diese) (patient|patientin)\b.{0,40}\b(hat|ist|leidet|sollte|muss)\b",
    r"\b(sollte|muss|soll)\b.{0,40}\b(beginnen|erhalten|starten|behandelt werden|operiert)\b",
    r"\bdie diagnose (ist|lautet)\b",
    # French
    r"\b(le|la|ce|cette) (patient|patiente)\b.{0,40}\b(a|est|souffre|doit|devrait)\b",
    r"\b(doit|devrait|doivent)\b.{0,30}\b(commencer|recevoir|subir|debuter|etre traite)",
    r"\ble diagnostic est\b",
    # Spanish
    r"\b(el|la|este|esta) paciente\b.{0,40}\b(tiene|padece|es|debe|deberia)\b",
    r"\b(debe|deberia|deben|tiene que)\b.{0,30}\b(iniciar|comenzar|empezar|recibir|someterse)",
    r"\bel diagnostico es\b",
    # Chinese
    r"(患者|病人).{0,12}(患有|得了|是|确诊|应|应该|必须|需要)",
    r"(应|应该|必须|需要|建议).{0,8}(化疗|放疗|治疗|手术|用药)",
    r"诊断(为|是)",
]
_CLINICAL = re.compile("|".join(f"(?:{p})" for p in _CLINICALS), re.I | re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")


def fold(text: str) -> str:
    """A detection copy: NFKC, invisible characters out, homoglyphs and accents to ASCII."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_HOMOGLYPHS)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text).lower()


def _decoded_b64(token: str) -> str | None:
    """The text a base64 token carries, when it carries text (DNA strings and ids do not)."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=False)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(c.isprintable() or c.isspace() for c in text)
    letters = sum(c.isalpha() for c in text)
    if not text or printable / len(text) < 0.95 or letters / len(text) < 0.5:
        return None
    return text


def _hidden_payloads(text: str) -> tuple[str, list[str]]:
    """Text with base64 / URL-encoded runs removed, and what those runs decoded to."""
    decoded: list[str] = []

    def b64(m: re.Match[str]) -> str:
        token = m.group(0)
        if token.isalpha() and (token.isupper() or token.islower()):
            return token  # a long word or a sequence (ACGT...), not base64 text
        out = _decoded_b64(token)
        if out is None:
            return token
        decoded.append(out)
        return ENCODED

    def url(m: re.Match[str]) -> str:
        out = unquote(m.group(0))
        if sum(c.isalpha() for c in out) < 3:
            return m.group(0)
        decoded.append(out)
        return ENCODED

    text = _B64.sub(b64, text)
    text = _URLENC.sub(url, text)
    return text, decoded


def _strip_markup(text: str) -> str:
    for _ in range(2):  # markup that arrived entity-escaped ("&lt;script&gt;") goes too
        text = html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", text)))
    return _TAG.sub(" ", _SCRIPT.sub(" ", text))


def instructs(text: str) -> bool:
    """Whether text speaks to the assistant (an instruction or a role marker), in any disguise."""
    plain = _strip_markup(text)
    views = [fold(plain)]
    if "%" in plain:
        views.append(fold(unquote(plain)))
    if any(_ROLE.search(v) or _INSTRUCTION.search(v) for v in views):
        return True
    _, hidden = _hidden_payloads(_INVISIBLE.sub("", _strip_markup(text)))
    return any(_ROLE.search(fold(h)) or _INSTRUCTION.search(fold(h)) for h in hidden)


def is_clinical_advice(sentence: str) -> bool:
    """A diagnosis of a person or a treatment recommendation."""
    return bool(_CLINICAL.search(fold(sentence)))


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s and s.strip()]


def inert(text: str | None, *, max_chars: int | None = None) -> str:
    """One retrieved text made safe to quote and to prompt with (see the module's docstring)."""
    if not text:
        return ""
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", _strip_markup(str(text))))
    if instructs(text):
        return WITHHELD
    text, _ = _hidden_payloads(text)
    text = _QUOTES.sub("'", text).translate(_BRACKETS)
    kept = [CLINICAL if is_clinical_advice(s) else s.strip() for s in _sentences(text)]
    out = " ".join(k for i, k in enumerate(kept) if k != CLINICAL or kept[i - 1 : i] != [CLINICAL])
    out = re.sub(r"\s+", " ", out).strip()
    if max_chars and len(out) > max_chars:
        out = out[: max_chars - 1].rstrip() + "…"
    return out


def _inert_value(value: Any) -> Any:
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, list):
        return [_inert_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _inert_value(v) for k, v in value.items()}
    return value


_TEXT_FIELDS = ("title", "snippet", "venue", "authors")


_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


def filter_answer(text: str) -> tuple[str, list[str]]:
    """An answer without diagnoses or treatment recommendations, nor markdown images (which
    a browser would fetch); returns (text, warnings). ``Note:`` lines are the tool's own."""
    from agent.citations import split_sentences

    warnings: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        line = _MD_IMAGE.sub("", line)
        if line.lstrip().startswith("Note:"):
            lines.append(line)
            continue
        kept = []
        for sentence in split_sentences(line):
            if is_clinical_advice(sentence):
                short = sentence if len(sentence) <= 80 else sentence[:77] + "..."
                warnings.append(
                    f"left out a diagnosis or treatment statement (research use only): {short!r}"
                )
                continue
            kept.append(sentence)
        if kept or not line.strip():
            lines.append(" ".join(kept))
    return "\n".join(lines).strip(), warnings


def inert_output(tool: str, output: Any) -> Any:
    """A tool's JSON output with every retrieved text made inert (the state keeps this copy).

    Identifiers of records (PMIDs, URLs, case ids) stay as they are: they are what a researcher
    follows to read the original.
    """
    if not isinstance(output, dict):
        return output
    out = dict(output)
    if tool == "literature":
        out["sources"] = [
            {**s, **{k: _inert_value(s[k]) for k in _TEXT_FIELDS if s.get(k)}}
            for s in out.get("sources") or []
        ]
        # Evidence sentences were ranked from the raw abstracts: none from a withheld field,
        # each made inert itself (a sentence about a patient's treatment goes).
        by_id = {str(s.get("id")): s for s in out["sources"]}
        evidence = []
        for ev in out.get("evidence") or []:
            src = by_id.get(str(ev.get("source_id")), {})
            field = src.get("title" if ev.get("part") == "title" else "snippet", "")
            sentence = inert(ev.get("sentence"))
            if field != WITHHELD and sentence and CLINICAL not in sentence:
                evidence.append({**ev, "sentence": sentence})
        if "evidence" in out:
            out["evidence"] = evidence
    elif tool == "similar":
        out["cases"] = [
            {**c, "caption": inert(c.get("caption")), "metadata": _inert_value(c.get("metadata"))}
            for c in out.get("cases") or []
        ]
    elif tool == "vision" and isinstance(out.get("text"), str):
        out["text"] = inert(out["text"])
    return out
