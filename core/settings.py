"""One settings object for the API, the worker and the web UI, read from the environment and ``.env``.

Everything lives under one data directory by default (``./data`` or ``$SASFORMER_HOME``), so the
embedded configuration (SQLite, filesystem broker) needs no server. Variables carry the
``SASFORMER_`` prefix; ``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` are also read
unprefixed because that is how hosting platforms and compose files hand them out.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.config import MIT_VARIANTS


def _default_home() -> Path:
    return Path("data")


def _csv(value: object) -> object:
    """``"a,b"`` -> ``["a", "b"]`` so lists can be given as plain comma-separated env values."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of SASFormer Studio (see ``docs/api.md`` for the variables)."""

    model_config = SettingsConfigDict(env_prefix="SASFORMER_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Field(default_factory=_default_home, validation_alias=AliasChoices("SASFORMER_HOME"))
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SASFORMER_DATABASE_URL"))
    # PostgreSQL only: tables go into this schema (created if missing); lets test runs not collide.
    database_schema: str | None = None
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SASFORMER_REDIS_URL"))
    celery_broker_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CELERY_BROKER_URL", "SASFORMER_BROKER_URL"))
    celery_result_backend: str | None = Field(
        default=None, validation_alias=AliasChoices("CELERY_RESULT_BACKEND", "SASFORMER_RESULT_BACKEND"))
    broker_key_prefix: str = ""  # Redis only: prefix of every broker key

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Bearer tokens; both empty = no authentication (the embedded single-user default).
    admin_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    read_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=50_000_000, ge=64)
    max_thumbnail_side: int = Field(default=1024, ge=16)

    default_variant: str = "b0"
    # A local MiT/SegFormer checkpoint used for new projects when they name none (never downloaded).
    default_pretrained: Path | None = None
    # Directory of checkpoints that ``POST /projects`` may name by file name (never arbitrary paths).
    pretrained_dir: Path | None = None
    device: str | None = None  # None = CUDA when present, else CPU
    predictor_cache_size: int = Field(default=2, ge=1)
    prediction_cache: bool = True
    # Live mode (``/segment`` with ``live``): memory for cached per-image features (filter bank, encoder),
    # and how long a live request waits for a running refit before it fits the head itself.
    live_cache_mb: int = Field(default=768, ge=16)
    live_wait_s: float = Field(default=10.0, ge=0)
    # Keep each labelled image's sampled live rows under cache/live_rows (~1-2 MB per image): after a restart
    # the first live mask reads them instead of featurising every labelled image again.
    live_rows_on_disk: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    # Web UI (Gradio) mounted at /ui in the API process; off for API-only deployments.
    ui_enabled: bool = True
    # Where the UI sends its API calls; default: the server socket the browser reached (same process).
    ui_api_url: str | None = None

    # ---- fine-tune worker (Celery) ------------------------------------------------------------
    # Which queue the API sends jobs to, and which queues a worker consumes: one queue per resource,
    # so a CPU-only worker never picks up a job meant for a GPU. "auto" = "gpu" when CUDA is visible to
    # this process, else "cpu"; a split deployment (API without GPU) sets SASFORMER_JOB_QUEUE=gpu.
    job_queue: Literal["auto", "gpu", "cpu"] = "auto"
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty = [job queue]
    # Redis re-delivers an unacknowledged job (its worker died) only after this: it must exceed the
    # longest job, or a healthy long job is handed out twice. Tests set it to a few seconds.
    worker_visibility_timeout_s: int = Field(default=6 * 3600, ge=1)
    # A job is stopped gracefully (checkpoint + bundle) at the soft limit and killed at the hard one.
    job_soft_time_limit_s: int = Field(default=4 * 3600, ge=10)
    job_hard_time_limit_s: int = Field(default=4 * 3600 + 600, ge=20)
    # A running job writes a heartbeat this often (a thread, independent of step length); a job whose
    # heartbeat is older than ``job_stale_after_s`` (or whose process is gone) counts as lost.
    job_heartbeat_s: float = Field(default=5.0, gt=0)
    job_stale_after_s: float = Field(default=120.0, gt=0)
    # A lost job is re-queued (and resumes from its checkpoint) until it has started this many times,
    # then marked failed with the reason: a job that kills its worker cannot loop forever.
    job_max_attempts: int = Field(default=3, ge=1)
    job_checkpoint_every: int = Field(default=25, ge=1)  # steps between checkpoints (also on stop)
    job_sweep_interval_s: float = Field(default=15.0, gt=0)  # worker's lost-job sweeper period
    # A worker's job-table write that finds the database busy (SQLite's write lock held past its 30 s
    # busy timeout by another process on a loaded machine, PostgreSQL restarting) is retried for this
    # long before the delivery gives up: giving up on a claim leaves the job queued with no message.
    job_db_retry_s: float = Field(default=300.0, ge=0)
    # Train-on-submit: after this many annotation saves in a project since its last job, a fine-tune job
    # is queued (unless one is queued or running). 0 = off: jobs start only when asked.
    auto_train_after_saves: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("admin_tokens", "read_tokens", "cors_origins", "worker_queues"):
                if key in data:
                    data[key] = _csv(data[key])
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_variant not in MIT_VARIANTS:
            raise ValueError(f"default_variant must be one of {sorted(MIT_VARIANTS)}, got {self.default_variant!r}")
        weak = [t for t in self.admin_tokens + self.read_tokens if len(t) < 16 or t in ("changeme", "secret")]
        if weak and self.environment == "production":
            raise ValueError("auth tokens must be at least 16 characters and not a default value in production")
        if self.environment == "production" and not self.admin_tokens:
            raise ValueError("production needs SASFORMER_ADMIN_TOKENS: an open API is for development only")
        if self.job_hard_time_limit_s <= self.job_soft_time_limit_s:
            raise ValueError("job_hard_time_limit_s must exceed job_soft_time_limit_s (the soft limit stops a job "
                             "gracefully, the hard one kills it)")
        if self.worker_visibility_timeout_s <= self.job_hard_time_limit_s and self.environment == "production":
            raise ValueError("worker_visibility_timeout_s must exceed job_hard_time_limit_s, or Redis hands a "
                             "running job to a second worker")
        bad = [q for q in self.worker_queues if q not in ("gpu", "cpu")]
        if bad:
            raise ValueError(f"worker_queues may only name 'gpu' and 'cpu', got {bad}")
        return self

    # ---- derived locations -------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def labels_dir(self) -> Path:
        return self.home / "labels"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def live_rows_dir(self) -> Path:
        return self.cache_dir / "live_rows"

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL with a driver SQLAlchemy has here (``postgresql://`` -> psycopg 3)."""
        url = self.database_url or f"sqlite:///{(self.home / 'db.sqlite').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url

    @property
    def broker_url(self) -> str:
        """Celery broker: explicit URL, else Redis when ``REDIS_URL`` is set, else the filesystem transport."""
        return self.celery_broker_url or self.redis_url or "filesystem://"

    @property
    def result_backend(self) -> str:
        if self.celery_result_backend:
            return self.celery_result_backend
        if self.redis_url:
            return self.redis_url
        return f"file://{(self.jobs_dir / 'results').resolve()}"

    @property
    def broker_transport_options(self) -> dict[str, Any]:
        """Filesystem: its folders (the control folder makes revoke/inspect work). Redis: the visibility
        timeout, and ``SASFORMER_BROKER_KEY_PREFIX`` so several installations (or test runs) share a server."""
        if self.broker_url.startswith("filesystem"):
            b = self.broker_dir.resolve()
            return {"data_folder_in": str(b / "out"), "data_folder_out": str(b / "out"),
                    "processed_folder": str(b / "processed"), "control_folder": str(b / "control"),
                    "store_processed": False, "polling_interval": 0.25}
        opts: dict[str, Any] = {"visibility_timeout": self.worker_visibility_timeout_s}
        if self.broker_key_prefix:
            opts["global_keyprefix"] = self.broker_key_prefix
        return opts

    @property
    def broker_folders(self) -> list[Path]:
        """Folders the filesystem broker needs (empty for other brokers)."""
        if not self.broker_url.startswith("filesystem"):
            return []
        b = self.broker_dir.resolve()
        return [b / "out", b / "processed", b / "control"]

    @property
    def result_folders(self) -> list[Path]:
        """The file result backend's folder (empty for other backends)."""
        url = self.result_backend
        return [Path(url[len("file://"):])] if url.startswith("file://") else []

    def resolved_job_queue(self) -> str:
        """The queue jobs are sent to: the setting, or by whether this process sees CUDA."""
        if self.job_queue != "auto":
            return self.job_queue
        return "gpu" if cuda_visible() else "cpu"

    def resolved_worker_queues(self) -> list[str]:
        return list(self.worker_queues) or [self.resolved_job_queue()]

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_tokens or self.read_tokens)

    def ensure_dirs(self) -> None:
        for d in (self.home, self.images_dir, self.labels_dir, self.models_dir, self.jobs_dir, self.broker_dir,
                  self.cache_dir, *self.broker_folders, *self.result_folders):
            d.mkdir(parents=True, exist_ok=True)


def cuda_visible() -> bool:
    """Whether CUDA is usable, asked through NVML so the process does not initialise CUDA: a Celery
    prefork parent that did would hand a broken CUDA context to its forked children."""
    import os

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    return bool(torch.cuda.is_available())


def get_settings() -> Settings:
    return Settings()
