"""Process configuration: environment variables, then ``planfleet.toml``, then defaults.

Operator toggles that must change while the fleet runs (``auto_plan``, ``auto_build``,
``watch_dir``, ``max_parallel``) are not here: they live in the ``settings`` row
(:mod:`planfleet.schema.repositories`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from planfleet import defaults, script_paths
from planfleet.policy import StepPolicy

#: The Windmill assets shipped inside the package: scripts the local runner runs by default,
#: with their metadata and ``wmill.yaml`` (``deploy/windmill`` in a checkout points here).
SHIPPED_SCRIPTS = Path(__file__).resolve().parent / "windmill"
#: The Procfile ``planfleet up`` runs when the working directory has none.
SHIPPED_PROCFILE = Path(__file__).resolve().parent / "Procfile"

def _env(name: str) -> AliasChoices:
    """Accept both the plain name (``DATABASE_URL``) and the prefixed one."""
    return AliasChoices(name, f"PLANFLEET_{name}")


class Config(BaseSettings):
    """What every planfleet process needs to know at start."""

    model_config = SettingsConfigDict(
        env_prefix="PLANFLEET_", toml_file="planfleet.toml", extra="ignore", frozen=True,
        populate_by_name=True,
    )

    database_url: str = Field(defaults.DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    redis_url: str = Field(defaults.REDIS_URL, validation_alias=_env("REDIS_URL"))
    watch_dir: Path = Field(Path(defaults.WATCH_DIR), validation_alias=_env("WATCH_DIR"))
    windmill_url: str | None = Field(None, validation_alias=_env("WINDMILL_URL"))
    windmill_token: str | None = Field(None, validation_alias=_env("WINDMILL_TOKEN"))
    windmill_workspace: str = Field(
        defaults.WINDMILL_WORKSPACE, validation_alias=_env("WINDMILL_WORKSPACE"))
    api_token: str | None = Field(None, validation_alias=AliasChoices("PLANFLEET_API_TOKEN"))
    #: a token Prometheus may send for /metrics only (the API token works there too)
    metrics_token: str | None = Field(
        None, validation_alias=AliasChoices("PLANFLEET_METRICS_TOKEN"))
    #: ``watch_dir`` (the setting) must be this folder or one inside it; unset: the
    #: working directory of the process
    watch_root: Path | None = Field(None, validation_alias=AliasChoices("PLANFLEET_WATCH_ROOT"))
    #: how many ``POST /api/plan`` requests plan at once (one more answers 429)
    plan_concurrency: int = Field(defaults.PLAN_CONCURRENCY, ge=1)

    stability_window: float = Field(defaults.STABILITY_WINDOW, ge=0)
    max_file_bytes: int = Field(defaults.MAX_FILE_BYTES, gt=0)
    rescan_interval: float = Field(defaults.RESCAN_INTERVAL, gt=0)
    watch_tick: float = Field(defaults.WATCH_TICK, gt=0)
    plan_queue: str = defaults.PLAN_QUEUE
    build_queue: str = defaults.BUILD_QUEUE
    state_dir: Path = Path(defaults.STATE_DIR)
    #: where steps run: ``local`` (the embedded runner) or ``windmill`` (its REST API)
    dispatch: str = Field("local", pattern="^(local|windmill)$")
    #: ``steps``: one job per step, started event-driven; ``flow``: the whole plan as one
    #: Windmill flow job (dispatch ``windmill`` only)
    build_mode: str = Field("steps", pattern="^(steps|flow)$")
    windmill_concurrency: int = Field(defaults.WINDMILL_CONCURRENCY, ge=1)
    windmill_poll: float = Field(defaults.WINDMILL_POLL, gt=0)
    windmill_timeout: float = Field(defaults.WINDMILL_TIMEOUT, gt=0)
    windmill_retry_base: float = Field(defaults.WINDMILL_RETRY_BASE, gt=0)
    windmill_retry_cap: float = Field(defaults.WINDMILL_RETRY_CAP, gt=0)
    windmill_check_after: float = Field(defaults.WINDMILL_CHECK_AFTER, gt=0)
    windmill_flow_folder: str = defaults.WINDMILL_FLOW_FOLDER
    circuit_threshold: int = Field(defaults.CIRCUIT_THRESHOLD, ge=1)
    circuit_cooldown: float = Field(defaults.CIRCUIT_COOLDOWN, ge=0)
    #: Windmill-style scripts the local runner runs (the ones shipped in the package)
    scripts_dir: Path = Field(default_factory=lambda: SHIPPED_SCRIPTS)
    #: the most a task file may set max_parallel to (the settings' default is clamped to it)
    max_parallel_limit: int = Field(defaults.MAX_PARALLEL_LIMIT, ge=1)
    #: the longest step timeout a task file may ask for, seconds
    step_timeout_limit: float = Field(defaults.STEP_TIMEOUT_LIMIT, gt=0)
    #: globs of the Windmill scripts task files may run, separated by commas or spaces
    #: (unset: the scripts under scripts_dir and the default script)
    allowed_scripts: str | None = None
    #: attempts at planning an input that end in an unexpected error before it is failed
    plan_max_attempts: int = Field(defaults.PLAN_MAX_ATTEMPTS, ge=1)
    step_max_attempts: int = Field(defaults.STEP_MAX_ATTEMPTS, ge=1)
    step_retry_base: float = Field(defaults.STEP_RETRY_BASE, ge=0)
    step_retry_cap: float = Field(defaults.STEP_RETRY_CAP, ge=0)
    step_timeout: float = Field(defaults.STEP_TIMEOUT, gt=0)
    #: a timed-out step's next attempt gets this many times its timeout, up to the cap
    timeout_factor: float = Field(defaults.TIMEOUT_FACTOR, ge=1)
    timeout_cap: float = Field(defaults.TIMEOUT_CAP, gt=0)
    #: seconds past a step's timeout before the build worker gives up on its job and cancels
    #: it (the runner's own timeout should fire first)
    timeout_grace: float = Field(defaults.TIMEOUT_GRACE, ge=0)
    #: seconds a quality check may run
    qa_timeout: float = Field(defaults.QA_TIMEOUT, gt=0)
    #: when a step's attempts are used up: ``escalate`` (blocked, a person decides) or ``fail``
    on_exhausted: str = Field("escalate", pattern="^(escalate|fail)$")
    build_poll: float = Field(defaults.BUILD_POLL, gt=0)
    #: steps the local runner runs at once, fleet-wide on this machine
    runner_slots: int = Field(defaults.RUNNER_SLOTS, ge=1)
    #: seconds of waiting ready that raise a step's standing by one priority level
    aging: float = Field(defaults.AGING, gt=0)
    #: turns a build worker takes at once (threads; its Postgres pool grows to match)
    turn_threads: int = Field(defaults.TURN_THREADS, ge=1, le=64)
    build_stale: float = Field(defaults.BUILD_STALE, gt=0)
    requeue_after: float = Field(defaults.REQUEUE_AFTER, gt=0)
    reconcile_interval: float = Field(defaults.RECONCILE_INTERVAL, gt=0)
    #: seconds a planning input's lease may stay silent before it is queued again
    plan_stale: float = Field(defaults.PLAN_STALE, gt=0)
    #: prune finished records older than this many seconds (the reconciler, hourly); unset:
    #: never (``planfleet prune`` does it by hand)
    prune_after: float | None = Field(None, gt=0)
    log_format: str = Field("auto", pattern="^(auto|json|console)$")
    #: where ``planfleet api`` listens (another address than loopback needs an API token)
    api_host: str = defaults.API_HOST
    api_port: int = Field(defaults.API_PORT, ge=0, le=65535)

    def script_patterns(self, registered: Iterable[str] = ()) -> tuple[str, ...]:
        """The allow-list of scripts: PLANFLEET_ALLOWED_SCRIPTS, else the scripts folder's
        plus ``registered`` (the scripts of the fleet's declared solvers)."""
        if self.allowed_scripts is not None:
            return script_paths.parse_patterns(self.allowed_scripts)
        return script_paths.default_patterns(self.scripts_dir, registered)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment wins over planfleet.toml
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def step_policy(self) -> StepPolicy:
        """The fleet's step policy (a task file's ``policy`` and a task's own go on top:
        :func:`planfleet.policy.effective`)."""
        return StepPolicy(max_attempts=self.step_max_attempts, retry_base=self.step_retry_base,
                          retry_cap=self.step_retry_cap, timeout=self.step_timeout,
                          timeout_factor=self.timeout_factor, on_exhausted=self.on_exhausted)
