"""Literature tools: PubMed, arXiv, web (Tavily) and Wikipedia behind one interface.

    from tools.literature import search_literature
    result = search_literature("nuclei segmentation H&E", sources=["pubmed", "arxiv"])
    result.sources       # list[litevlm.types.Source]
    result.unavailable   # {"web": "source unavailable: ..."}

Each provider lives in its own module; ``fanout`` runs them together with the cache, the rate
limiters and PHI redaction.
"""

from tools.literature.base import PROVIDERS, LiteratureResult, ProviderUnavailable, clean_text
from tools.literature.fanout import (
    asearch_literature,
    default_cache_path,
    make_provider,
    search_literature,
)

__all__ = [
    "PROVIDERS",
    "LiteratureResult",
    "ProviderUnavailable",
    "asearch_literature",
    "clean_text",
    "default_cache_path",
    "make_provider",
    "search_literature",
]
