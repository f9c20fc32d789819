"""Settings, read from the environment (prefix ``COUNTERSIGN_``) and an optional ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "approvals" / "demo_policy.yaml"


class Settings(BaseSettings):
    """Every knob of a Countersign process; read once at an entry point and passed down."""

    model_config = SettingsConfigDict(env_prefix="COUNTERSIGN_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".countersign")
    database_url: str = ""
    business_database_url: str = ""

    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_api_key: str = ""
    temporal_tls: bool = False
    task_queue: str = "countersign"

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)

    policy_path: Path = DEFAULT_POLICY
    # Approver groups beyond those the policy file declares (its `approvers:` list): roles `approver:<group>`.
    approver_groups: list[str] = []

    model: str = "scripted"
    model_base_url: str = ""
    model_api_key: str = ""
    model_fallback: str = ""
    # Per-agent provider strings, as JSON: {"claims_triage": "openai:gpt-4.1"}; others use ``model``.
    agent_models: dict[str, str] = {}
    model_timeout_seconds: float = 60.0
    model_max_attempts: int = Field(default=3, ge=1, le=10)
    tool_timeout_seconds: float = 30.0
    # Activity steps heartbeat this often (a third of it): a dead worker's step is retried after this long.
    activity_heartbeat_seconds: float = Field(default=10.0, gt=0)
    # A model step is retried after worker crashes for at most this long; model errors count separately.
    step_deadline_seconds: float = Field(default=1800.0, gt=0)
    # Demo mode for the demo systems of record: each run sees them as seeded plus its own changes, so demo
    # runs, benchmarks and evals repeat exactly (`countersign dev` turns it on). Never for real records.
    demo_sandbox: bool = False
    # Paused runs beyond this are evicted from a worker's memory and replayed when a decision comes. Each
    # cached run held about 0.5 MiB (its sandbox, compiled graph and checkpoints; now only its state and
    # checkpoints, measured less): 250 kept a worker near 350 MiB however many runs are paused (500 measured
    # 451 MiB at 10,000 paused).
    worker_max_cached_workflows: int = Field(default=250, ge=0)
    # Run workflows in the Temporal SDK's sandbox. Off by default: it re-imports the workflow module for every
    # run and proxies its calls, a fifth of the worker's CPU per run. The workflow code is written to run in
    # it, and the replay test replays a fresh run's history in it, so a call it forbids fails the suite.
    workflow_sandbox: bool = False

    # USD per million tokens, by the model string of COUNTERSIGN_MODEL; set as JSON to change or add prices.
    prices: dict[str, dict[str, float]] = {
        "scripted": {"input_per_million": 0.0, "output_per_million": 0.0},
        "openai:gpt-4.1": {"input_per_million": 2.0, "output_per_million": 8.0},
        "openai:gpt-4.1-mini": {"input_per_million": 0.4, "output_per_million": 1.6},
        "openai:gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6},
        "anthropic:claude-sonnet-4-5": {"input_per_million": 3.0, "output_per_million": 15.0},
        "anthropic:claude-haiku-4-5": {"input_per_million": 1.0, "output_per_million": 5.0},
    }
    budget_max_model_calls: int = Field(default=25, ge=1)
    budget_max_tokens: int = Field(default=200_000, ge=1)
    budget_max_cost_usd: float = Field(default=5.0, ge=0)
    trace_retention_days: int = Field(default=30, ge=1)
    # A span per SQL statement of the API: off by default (a run's start is nine statements; their spans cost
    # more than the statements on SQLite, and say nothing an auditor reads). The workers' steps are traced
    # either way.
    trace_sql: bool = False
    # How long judged tool calls (with their arguments) are kept for `countersign policy diff`.
    policy_call_retention_days: int = Field(default=90, ge=1)

    # Ed25519 key (`countersign audit keygen`) that signs ledger checkpoints every audit_checkpoint_seconds
    # (0: never); each is stored, appended to audit_checkpoint_file and exported. Verifiers need only the
    # public key (audit_public_key, or --public-key).
    audit_signing_key: SecretStr | None = None
    audit_public_key: str = ""
    audit_checkpoint_seconds: int = Field(default=300, ge=0)
    audit_checkpoint_file: Path | None = None

    max_body_bytes: int = 64 * 1024
    capture_content: bool = False

    # People sign in with an OIDC provider's JWTs; unset issuer means only API keys are accepted.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""  # https URL of the provider's JWKS, or a path to a JWKS file
    oidc_roles_claim: str = "roles"
    oidc_tenant_claim: str = "tenant"
    oidc_algorithms: list[str] = ["RS256", "ES256", "PS256", "EdDSA"]
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=600)
    # The console's "Sign in with SSO" (authorization code + PKCE) needs the issuer, the JWKS and a client id;
    # a confidential client also sends its secret. The redirect URL defaults to <console>/ui/sso/callback.
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str = ""
    oidc_scopes: str = "openid profile"

    # The web console (/ui): how long a sign-in lasts, sign-in attempts per minute per client address, and
    # the Temporal Web UI that run pages link to (default: the local dev server's).
    ui_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    ui_sign_ins_per_minute: int = Field(default=10, ge=0)
    temporal_ui_url: str = ""
    # Where people reach the API and console (links in chat notifications); the local API by default.
    public_url: str = ""

    # GET /metrics: a bearer token the scraper must send (unset: open, as metrics carry no personal data),
    # and how long one scrape's numbers are served again; each worker's own metrics listen on this port
    # (0: off; `countersign dev` uses 9464 and up).
    metrics_token: SecretStr | None = None
    metrics_cache_seconds: float = Field(default=5.0, ge=0)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    runs_per_minute: int = Field(default=60, ge=0)  # per key (or person); 0 turns the limit off
    max_active_runs_per_tenant: int = Field(default=100, ge=0)  # running or awaiting approval; 0 = no cap

    # Webhook URLs may not point into private, loopback or link-local ranges unless this is on (dev, tests).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    events_poll_seconds: float = Field(default=0.5, gt=0, le=30)
    events_stream_max_seconds: float = Field(default=900.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    def resolved_database_url(self) -> str:
        """The Countersign database URL; SQLite under the data directory unless configured."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'countersign.db'}"

    def resolved_business_database_url(self) -> str:
        """The demo systems-of-record database URL; SQLite under the data directory unless configured."""
        return self.business_database_url or f"sqlite+aiosqlite:///{self.data_dir / 'business.db'}"

    def resolved_checkpoint_file(self) -> Path:
        """Where signed checkpoints are appended (outside the database); in the data directory by default."""
        return self.audit_checkpoint_file or self.data_dir / "audit-checkpoints.jsonl"

    def resolved_temporal_address(self) -> str:
        """The Temporal frontend address; the local dev server's port unless configured."""
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    def resolved_public_url(self) -> str:
        """The base URL people open the console at."""
        return (self.public_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    def resolved_temporal_ui_url(self) -> str:
        """The Temporal Web UI's base URL; the local dev server's unless configured."""
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")

    def known_roles(self) -> set[str]:
        """The fixed roles and the settings' approver groups; the policy file's `approvers:` add to these
        (``approvals.policy.declared_roles``)."""
        return {"trigger", "auditor", "admin"} | {f"approver:{g}" for g in self.approver_groups}
