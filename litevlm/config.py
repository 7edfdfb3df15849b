"""Configuration: one ``litevlm.toml`` whose sections mirror the packages.

Precedence (highest first): keyword arguments, ``LITEVLM_<SECTION>__<KEY>`` environment
variables, the TOML file, defaults. Every key has a default, so no file is needed. The
documented reference file is ``litevlm/litevlm.toml`` (``litevlm config --show`` prints it).

The file is found in this order: ``load_settings(path)``, ``$LITEVLM_CONFIG``,
``./litevlm.toml``, ``<user config dir>/litevlm.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from litevlm.errors import ConfigError

ENV_PREFIX = "LITEVLM_"


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class VisionConfig(_Section):
    """The vision-language model: any Hugging Face image-text-to-text checkpoint."""

    model: str = "google/paligemma-3b-mix-448"
    backend: Literal["local", "openai"] = Field(
        default="local",
        description="local: load the model in this process; openai: an OpenAI-compatible "
        "server (vLLM, TGI, transformers serve) at base_url",
    )
    base_url: str | None = Field(default=None, description="openai backend: the server's /v1 URL")
    served_model: str | None = Field(
        default=None, description="openai backend: the served model's name (default: model)"
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="openai backend: environment variable of the key"
    )
    timeout_s: float = Field(default=120.0, gt=0, description="openai backend: per request")
    max_retries: int = Field(default=3, ge=0, description="openai backend: on 429 / 5xx")
    concurrency: int = Field(default=4, ge=1, description="openai backend: requests in flight")
    revision: str | None = None
    quantization: Literal["none", "8bit", "4bit"] = "none"
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    bnb_4bit_embeddings: bool = Field(
        default=False,
        description="4-bit also quantises the token embedding / LM head: about 0.7 GiB less "
        "for PaliGemma-3B, but +14-21% perplexity over the 4-bit body alone on trained "
        "Gemma 3 / SmolLM2 weights (benchmarks/quantization.py); off by default",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    adapters: dict[str, str] = Field(
        default_factory=dict, description="name -> adapter directory or hub id"
    )
    adapter: str | None = Field(default=None, description="adapter name active by default")
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    num_beams: int = Field(default=1, ge=1, le=16)
    do_sample: bool = False
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    batch_size: int = Field(default=8, ge=1)
    local_files_only: bool = False
    slide_dense_tiles: int = Field(
        default=2,
        ge=0,
        description="whole-slide images: the model also sees this many tiles of the highest "
        "nuclear density (from the slide measurement)",
    )
    slide_sample_tiles: int = Field(
        default=2, ge=0, description="whole-slide images: and this many tissue tiles spread over it"
    )
    slide_tile_mpp: float = Field(
        default=0.5, gt=0, description="whole-slide images: um per pixel of the tiles it sees"
    )
    slide_tile_px: int = Field(
        default=448,
        ge=32,
        description="whole-slide images: tile side in pixels (the model's input side: 448 for "
        "paligemma-*-448, 224 for -224)",
    )


class MeasureConfig(_Section):
    """Classical image measurement (scikit-image)."""

    backend: Literal["classical", "cellpose"] = Field(
        default="classical", description="classical (scikit-image) or cellpose (local weights)"
    )
    cellpose_model: str = Field(
        default="nuclei", description="weights file, or its name in ~/.cellpose/models"
    )
    cellpose_diameter_px: float | None = Field(
        default=None, gt=0, description="object diameter for Cellpose; default: the model's"
    )
    cellpose_gpu: bool = False
    pixel_size_um: float | None = Field(default=None, gt=0)
    min_object_area_px: int = Field(default=20, ge=1)
    exclude_border: bool = True
    max_pixels: int = Field(default=100_000_000, ge=1)
    slide_max_tiles: int = Field(
        default=16,
        ge=1,
        description="whole-slide images in the agent: tissue tiles measured (an even sample); "
        "`litevlm measure SLIDE` measures all",
    )
    object_polarity: Literal["auto", "bright", "dark"] = Field(
        default="auto", description="bright objects on dark (fluorescence) or dark on bright"
    )
    smooth_sigma: float = Field(default=1.0, ge=0, description="Gaussian pre-smoothing, px")
    threshold_method: Literal["otsu", "li", "triangle", "yen"] = "li"
    threshold_clip_percentile: float = Field(
        default=99.0, gt=50, le=100, description="signal clipped here before the threshold"
    )
    refine_fraction: float = Field(
        default=0.5, ge=0, lt=1, description="object keeps pixels above this x its own peak"
    )
    split_touching: bool = True
    split_h: float = Field(
        default=0.01, ge=0, le=1, description="seed prominence (distance x intensity, 0..1)"
    )
    seed_distance: float = Field(
        default=0.3, gt=0, le=2, description="minimum seed spacing, x the typical radius"
    )
    background_tile_px: int | None = Field(
        default=None, ge=8, description="tile for the illumination estimate; default size/8"
    )
    dab_threshold: float = Field(default=0.04, gt=0, description="DAB OD (rgb2hed) for positive")
    dab_bins: list[float] = Field(
        default_factory=lambda: [0.04, 0.08, 0.15],
        min_length=3,
        max_length=3,
        description="DAB OD lower edges of 1+, 2+, 3+ (H-score)",
    )
    cell_expansion_px: int = Field(
        default=3, ge=0, description="ring around a nucleus read as its cell (IHC)"
    )
    max_objects_listed: int = Field(default=5000, ge=0)
    exports_with_overlay: bool = Field(
        default=True,
        description="with an overlay PNG, also write its object table (CSV), label TIFF and "
        "QuPath GeoJSON beside it (the chat offers them as downloads)",
    )


class RetrievalConfig(_Section):
    """Similar-case search: embedder and vector store."""

    backend: Literal["lancedb", "weaviate"] = "lancedb"
    uri: str | None = Field(default=None, description="LanceDB dir; default <data dir>/lancedb")
    collection: str = "cases"
    tenant: str | None = None
    embedder: str = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    text_embedder: str = "sentence-transformers/all-MiniLM-L6-v2"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=32, ge=1)
    k: int = Field(default=5, ge=1, le=1000)
    ann_threshold: int = Field(default=50_000, ge=0, description="rows before an ANN index")
    weaviate_url: str | None = Field(default=None, description="or env WEAVIATE_URL")
    weaviate_api_key: SecretStr | None = Field(
        default=None, description="or env WEAVIATE_API_KEY (docker-compose.yml requires one)"
    )
    weaviate_grpc_port: int = 50051
    fallback_embedder: str | None = Field(
        default="classical:color-texture-v1",
        description="image embedder used, with a warning, when `embedder` cannot load "
        "(no weights offline); results name it. Empty = fail instead",
    )
    hybrid: bool = Field(default=True, description="text queries: keyword + vector on captions")
    slide_tiles: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="whole-slide images: tissue tiles indexed per slide (spread over the tissue)",
    )
    slide_tile_mpp: float = Field(
        default=0.5, gt=0, description="whole-slide images: um per pixel of the indexed tiles"
    )
    slide_tile_px: int = Field(
        default=224, ge=32, description="whole-slide images: side of an indexed tile in pixels"
    )


class LiteratureConfig(_Section):
    """PubMed, arXiv, Tavily web search and Wikipedia."""

    sources: list[Literal["pubmed", "arxiv", "web", "wikipedia"]] = Field(
        default_factory=lambda: ["pubmed", "arxiv", "wikipedia", "web"]
    )
    max_results: int = Field(default=5, ge=1, le=100)
    pubmed_base_url: str = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
    arxiv_base_url: str = "https://export.arxiv.org/api/query"
    tavily_base_url: str = "https://api.tavily.com"
    wikipedia_base_url: str = "https://en.wikipedia.org/w/api.php"
    email: str | None = Field(default=None, description="sent to NCBI, as E-utilities asks")
    tool: str = "litevlm"
    ncbi_api_key: SecretStr | None = Field(default=None, description="or env NCBI_API_KEY")
    tavily_api_key: SecretStr | None = Field(default=None, description="or env TAVILY_API_KEY")
    tavily_topic: Literal["general", "news", "finance"] = "general"
    tavily_include_domains: list[str] = Field(default_factory=list)
    tavily_exclude_domains: list[str] = Field(default_factory=list)
    tavily_rate_per_s: float = Field(default=1.0, gt=0)
    tavily_search_depth: Literal["basic", "advanced"] = "basic"
    ncbi_rate_per_s: float | None = Field(
        default=None, gt=0, description="default 3/s, 10/s with a key; never above NCBI's limit"
    )
    arxiv_delay_s: float = Field(
        default=3.0, ge=0, description="seconds between arXiv calls; never below 3 for arxiv.org"
    )
    wikipedia_rate_per_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=15.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    max_retry_after_s: float = Field(
        default=60.0, ge=0, description="a longer Retry-After makes the source unavailable"
    )
    cache: bool = True
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    max_snippet_chars: int = Field(default=1500, ge=100)


class AgentConfig(_Section):
    """The LangGraph agent and its optional chat model."""

    chat_model: str | None = Field(
        default=None, description="init_chat_model string, e.g. openai:gpt-4o-mini; none = rules"
    )
    base_url: str | None = Field(default=None, description="OpenAI-compatible server URL")
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    checkpointer: str | None = Field(
        default=None, description="sqlite path or postgresql:// URL; default <data dir>/threads"
    )
    similar_k: int = Field(default=3, ge=0, le=50)
    literature_max: int = Field(default=3, ge=0, le=50)
    timeout_s: float = Field(
        default=60.0, gt=0, description="seconds one chat-model call may take (then: rules)"
    )
    max_tokens: int = Field(
        default=512, ge=16, le=32768, description="most tokens one chat-model reply may have"
    )
    turn_deadline_s: float = Field(
        default=180.0, gt=0, description="no chat-model call starts later than this into a turn"
    )
    routing: Literal["semantic", "keyword"] = Field(
        default="semantic",
        description="rules mode: route by meaning (all-MiniLM-L6-v2) or by keywords only",
    )


class UIConfig(_Section):
    """The Chainlit web app."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    auth: bool = False
    users: dict[str, SecretStr] = Field(
        default_factory=dict, description="username -> password (or env LITEVLM_UI__USERS)"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="other origins browsers may call the server from (e.g. a proxy's "
        "https://chat.example.org); the server's own origin is always allowed",
    )
    database_url: str | None = Field(default=None, description="default SQLite in data dir")
    max_upload_mb: int = Field(default=200, ge=1)
    heatmap: bool = Field(
        default=True,
        description="show the vision model's attention heat-map with answers (a chat setting)",
    )
    assistant: str = Field(
        default="agent.assistant:Assistant",
        description="module:Class answering the chat (a Settings -> Assistant-like class)",
    )


class FinetuneConfig(_Section):
    """Defaults for `litevlm finetune` (a run's own YAML overrides them)."""

    output_dir: str = "runs"
    seed: int = 42


def default_data_dir() -> Path:
    if env := os.environ.get("LITEVLM_DATA_DIR"):
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("litevlm", appauthor=False))


def _default_config_path() -> Path | None:
    if env := os.environ.get("LITEVLM_CONFIG"):
        return Path(env).expanduser()
    local = Path("litevlm.toml")
    if local.is_file():
        return local
    from platformdirs import user_config_dir

    user = Path(user_config_dir("litevlm", appauthor=False)) / "litevlm.toml"
    return user if user.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(
                f"{self.path}: configuration file not found", "check the path or LITEVLM_CONFIG"
            ) from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{self.path}: not valid TOML: {e}", "fix the syntax") from e
        except IsADirectoryError:
            raise ConfigError(
                f"{self.path}: is a directory, not a configuration file",
                "pass the litevlm.toml file itself; `litevlm config --show` prints a reference",
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read the configuration file ({e})") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)

    toml_path: ClassVar[Path | None] = None

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, cls.toml_path))


def _describe(err: dict[str, Any], path: Path | None) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    env = ENV_PREFIX + "__".join(p.upper() for p in loc)
    where = f"environment {env}" if env in os.environ else (str(path) if path else "settings")
    shown = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else key
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {shown} (see `litevlm config --show` for the keys)"
    value = err.get("input")
    return f"{where}: {shown} = {value!r} is not allowed: {err['msg']}"


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise ``ConfigError`` naming the key, value and rule."""
    toml_path = Path(path).expanduser() if path else _default_config_path()

    # A subclass carries the path so that no module-level state is mutated.
    cls = type("Settings", (Settings,), {"toml_path": toml_path})
    from pydantic_settings import SettingsError

    try:
        return cls(**overrides)
    except ValidationError as e:
        lines = [_describe(err, toml_path) for err in e.errors()]
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
    except SettingsError as e:
        raise ConfigError(_describe_env_error(e)) from None


def _describe_env_error(e: Exception) -> str:
    """pydantic-settings' "error parsing value for field" names neither the variable nor why."""
    import re

    m = re.search(r'field "([^"]+)"', str(e))
    field = m.group(1) if m else ""
    names = sorted(n for n in os.environ if n.upper().startswith(ENV_PREFIX + field.upper()))
    cause = e.__cause__ or e.__context__
    why = f": {cause}" if cause else ""
    # Names only: a value can be a password (LITEVLM_UI__USERS) or an API key.
    shown = ", ".join(names) or f"{ENV_PREFIX}{field.upper()}*"
    return (
        f"environment {shown}: not valid JSON for [{field}]{why} "
        "(lists and tables are JSON, e.g. LITEVLM_LITERATURE__SOURCES='[\"pubmed\"]')"
    )


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def reference_toml() -> str:
    """The documented reference configuration: every key, its default and what it means.

    Generated from the models above so that it cannot drift; ``litevlm.toml`` at the top of the
    repository is this text (a test keeps them equal).
    """
    lines = [
        "# litevlm.toml - reference configuration. Every key shows its default; delete what you",
        "# do not change. Each key can be overridden from the environment as",
        "# LITEVLM_<SECTION>__<KEY>, e.g. LITEVLM_VISION__QUANTIZATION=4bit.",
        "# Lists and tables in the environment are JSON:",
        "# LITEVLM_LITERATURE__SOURCES='[\"pubmed\"]'.",
        "",
        "# Where stores, caches and threads live (env LITEVLM_DATA_DIR; default: the platform's",
        "# user data directory).",
        '# data_dir = "~/.local/share/litevlm"',
    ]
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, _Section)):
            continue
        lines += ["", f"[{name}]"]
        if section.__doc__:
            lines += [f"# {line.strip()}" for line in section.__doc__.strip().splitlines()]
        for key, f in section.model_fields.items():
            default = f.get_default(call_default_factory=True)
            allowed = _allowed(f.annotation)
            note = f.description or ""
            if allowed:
                note = f"{note}; one of {allowed}" if note else f"one of {allowed}"
            if note:
                lines.append(f"# {note}")
            if default is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _allowed(annotation: Any) -> str:
    from typing import get_args, get_origin

    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return ", ".join(repr(a) for a in args)
    for arg in args:
        if get_origin(arg) is Literal:
            return ", ".join(repr(a) for a in get_args(arg))
    return ""
