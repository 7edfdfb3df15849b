"""PubMed through NCBI E-utilities: esearch for PMIDs, efetch for the records.

Transport: ``Bio.Entrez`` builds each request (tool/email/api_key parameters, GET or POST for long
id lists), and our own httpx client sends it. Biopython's ``esearch``/``efetch`` hard-code the
eutils.ncbi.nlm.nih.gov URL, read ``Entrez.email``/``tool``/``api_key`` from module globals, and
open URLs without a timeout; pointing them at a mirror or a test server would mean patching
module globals under a lock for every request. ``Entrez._build_request(cgi, params)`` takes the
URL and every parameter explicitly, so nothing global is mutated and our timeouts, retries and
rate limiter apply.

The XML is parsed here, not with Bio.Entrez's DTD-driven parser (which may download DTDs): the
article's own PMID is ``MedlineCitation/PMID`` only (never the PMIDs inside CommentsCorrections
or ReferenceList), titles and abstracts keep the text inside inline markup (``<i>TERT</i>``),
and the DOI comes from the article's own ArticleIdList or ELocationID.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from litevlm.types import Source
from tools.literature.base import MAX_AUTHORS, MAX_TITLE_CHARS, clean_text
from tools.literature.http import PermanentError, RetryPolicy, send, with_retries

if TYPE_CHECKING:
    import httpx

    from litevlm.config import LiteratureConfig
    from tools.literature.ratelimit import LimiterRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bio.Entrez warns (a 10-line UserWarning) on each request without an email; we log one line
# instead, and `litevlm literature` prints a hint.
warnings.filterwarnings("ignore", message=r"\s*Email address is not specified", module="Bio")

NCBI_HOST = "eutils.ncbi.nlm.nih.gov"
_YEAR = re.compile(r"(1[89]\d\d|20\d\d)")


def ncbi_interval_s(settings: LiteratureConfig, api_key: str | None) -> float:
    """Seconds between E-utilities requests: NCBI allows 3/s, or 10/s with an API key."""
    policy = 10.0 if api_key else 3.0
    rate = settings.ncbi_rate_per_s or policy
    if urlsplit(settings.pubmed_base_url).hostname == NCBI_HOST:
        rate = min(rate, policy)
    return 1.0 / rate


def _xml_root(data: bytes, what: str):
    from lxml import etree

    # No DTD loading, no entity expansion, no network: the DOCTYPE names a remote DTD.
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as e:
        raise PermanentError(f"{what}: malformed XML ({e})") from None
    if root is None:
        raise PermanentError(f"{what}: empty response")
    return root


def parse_esearch(data: bytes) -> list[str]:
    """PMIDs from an eSearchResult document; an ERROR element becomes a PermanentError."""
    root = _xml_root(data, "PubMed esearch")
    if root.tag != "eSearchResult":
        raise PermanentError(f"PubMed esearch: unexpected document <{root.tag}>")
    error = root.findtext("ERROR")
    if error:
        raise PermanentError(f"PubMed esearch: {clean_text(error, 200)}")
    return [i.text.strip() for i in root.findall("IdList/Id") if i.text and i.text.strip()]


def _text(elem) -> str:
    """All text inside an element, inline markup kept; MathML collapsed to one token."""
    if elem is None:
        return ""
    parts: list[str] = []

    def walk(e) -> None:
        tag = e.tag if isinstance(e.tag, str) else ""
        if tag.endswith("}math") or tag == "math":
            parts.append("".join(t.strip() for t in e.itertext()))
        else:
            if e.text:
                parts.append(e.text)
            for child in e:
                walk(child)
                if child.tail:
                    parts.append(child.tail)

    walk(elem)
    return "".join(parts)


def _year(article) -> int | None:
    pub = article.find("Article/Journal/JournalIssue/PubDate")
    for text in (
        pub.findtext("Year") if pub is not None else None,
        pub.findtext("MedlineDate") if pub is not None else None,  # "1998 Dec-1999 Jan"
        article.findtext("Article/ArticleDate/Year"),
    ):
        if text and (m := _YEAR.search(text)):
            return int(m.group(1))
    return None


def _authors(article) -> list[str]:
    names = []
    for a in article.findall("Article/AuthorList/Author"):
        if a.get("ValidYN", "Y") == "N":
            continue
        collective = a.findtext("CollectiveName")
        last = a.findtext("LastName")
        if last:
            initials = a.findtext("Initials") or a.findtext("ForeName") or ""
            names.append(f"{last} {initials}".strip())
        elif collective:
            names.append(_text(a.find("CollectiveName")).strip())
    return names


def _abstract(article) -> str:
    parts = []
    for t in article.findall("Article/Abstract/AbstractText"):
        text = _text(t).strip()
        label = t.get("Label")
        parts.append(f"{label}: {text}" if label and text else text)
    return " ".join(p for p in parts if p)


def _doi(pubmed_article, citation) -> str | None:
    # The article's own ids: PubmedData/ArticleIdList, not those of ReferenceList entries.
    for aid in pubmed_article.findall("PubmedData/ArticleIdList/ArticleId"):
        if aid.get("IdType") == "doi" and aid.text:
            return aid.text.strip()
    for loc in citation.findall("Article/ELocationID"):
        if loc.get("EIdType") == "doi" and loc.text:
            return loc.text.strip()
    return None


def parse_pubmed_xml(data: bytes, max_chars: int = 1500) -> list[Source]:
    """Sources from an efetch ``db=pubmed retmode=xml`` PubmedArticleSet."""
    root = _xml_root(data, "PubMed efetch")
    if root.tag != "PubmedArticleSet":
        raise PermanentError(f"PubMed efetch: unexpected document <{root.tag}>")
    sources = []
    for art in root.findall("PubmedArticle"):
        citation = art.find("MedlineCitation")
        if citation is None:
            continue
        pmid = (citation.findtext("PMID") or "").strip()
        if not pmid:
            continue
        journal = citation.find("Article/Journal")
        venue = None
        if journal is not None:
            venue = journal.findtext("Title") or journal.findtext("ISOAbbreviation")
        sources.append(
            Source(
                kind="pubmed",
                id=pmid,
                title=clean_text(_text(citation.find("Article/ArticleTitle")), MAX_TITLE_CHARS),
                authors=[clean_text(a, 200) for a in _authors(citation)[:MAX_AUTHORS]],
                year=_year(citation),
                venue=clean_text(venue, 300) or None,
                doi=_doi(art, citation),
                url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
                snippet=clean_text(_abstract(citation), max_chars),
            )
        )
    return sources


class PubMedProvider:
    name = "pubmed"

    def __init__(
        self,
        settings: LiteratureConfig,
        client: httpx.Client,
        limiters: LimiterRegistry,
    ) -> None:
        self.settings = settings
        self.client = client
        self.base = settings.pubmed_base_url.rstrip("/") + "/"
        key = settings.ncbi_api_key.get_secret_value() if settings.ncbi_api_key else None
        self.api_key = key or os.environ.get("NCBI_API_KEY") or None
        self.limiter = limiters.get(self.name, self.base, ncbi_interval_s(settings, self.api_key))
        self.policy = RetryPolicy.from_settings(settings)
        if not settings.email:
            log.info("literature.email is not set; NCBI asks E-utilities users for one")

    def _call(self, cgi: str, params: dict[str, str], what: str, parse: Callable[[bytes], T]) -> T:
        from Bio import Entrez

        params = {
            **params,
            "tool": self.settings.tool,
            "email": self.settings.email,
            "api_key": self.api_key,
        }
        request = Entrez._build_request(self.base + cgi, params)

        def attempt() -> T:
            headers = {"User-Agent": f"{self.settings.tool} (litevlm)"}
            if request.data is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = send(
                self.client,
                request.get_method(),
                request.full_url,
                what,
                timeout_s=self.policy.timeout_s,
                content=request.data,
                headers=headers,
            )
            return parse(response.content)

        return with_retries(attempt, policy=self.policy, limiter=self.limiter, name=self.name)

    def search(self, query: str, max_results: int) -> list[Source]:
        pmids = self._call(
            "esearch.fcgi",
            {"db": "pubmed", "term": query, "retmax": str(max_results), "sort": "relevance"},
            "PubMed esearch",
            parse_esearch,
        )[:max_results]
        if not pmids:
            return []
        records = self._call(
            "efetch.fcgi",
            {"db": "pubmed", "id": ",".join(pmids), "retmode": "xml", "rettype": "abstract"},
            "PubMed efetch",
            lambda data: parse_pubmed_xml(data, self.settings.max_snippet_chars),
        )
        found = {s.id: s for s in records}
        # efetch returns records in its own order; keep esearch's relevance order.
        return [found[p] for p in pmids if p in found]
