"""Every tunable of planfleet, each with the reason for its value.

Processes read these through :class:`planfleet.config.Config`, which lets the environment
(``PLANFLEET_*``) or ``planfleet.toml`` override them.
"""

from __future__ import annotations

#: Postgres used when ``DATABASE_URL`` is not set (the machine's own server).
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/planfleet"
#: Redis used when ``REDIS_URL`` is not set.
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Folder the watcher records task-list files from.
WATCH_DIR = "./input"

#: RQ queue that carries ``plan_input(input_id)`` jobs.
PLAN_QUEUE = "plan_queue"
#: RQ queue that carries ``build_plan(plan_id)`` jobs.
BUILD_QUEUE = "build_queue"

#: Seconds a file must keep its size and mtime before it is recorded.
STABILITY_WINDOW = 1.0
#: Files larger than this are refused without being read (16 MiB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Seconds between full rescans of the watch dir (a safety net for missed events).
RESCAN_INTERVAL = 30.0
#: Seconds between the watcher's checks of candidate files.
WATCH_TICK = 0.05
#: Files recorded in one database transaction at most.
RECORD_BATCH = 500
#: Seconds between re-reads of the settings row by long-running processes.
SETTINGS_REFRESH = 1.0

#: Default cap on tasks running at once in one plan (the settings row overrides it).
MAX_PARALLEL = 15
#: The most a task file (or the settings row) may set ``max_parallel`` to: each running step
#: is a process or a Windmill job (150 local steps took 1.9 GiB). A file over it is refused.
MAX_PARALLEL_LIMIT = 64
#: The longest step timeout a task file may ask for, seconds (a day). A file over it is refused.
STEP_TIMEOUT_LIMIT = 24 * 3600.0

#: Attempts at planning one input that end in an unexpected error (or a dead worker) before the
#: input is failed with that error: a poison pill is never planned again and again.
PLAN_MAX_ATTEMPTS = 3

#: RQ job timeout of a planning job, seconds.
PLAN_JOB_TIMEOUT = 600
#: RQ job timeout of a build job, seconds (builds wait on long steps; RQ's 180 s is too short).
BUILD_JOB_TIMEOUT = 24 * 3600
#: RQ retries of a job that hit a transient fault (database or Redis unavailable).
JOB_RETRY_MAX = 5
#: Seconds between those retries (RQ repeats the last value).
JOB_RETRY_INTERVALS = (2, 5, 15, 30, 60)
#: Seconds RQ keeps a finished job's record.
JOB_RESULT_TTL = 500

#: Connections in each process's Postgres pool.
DB_POOL_MIN = 0
DB_POOL_MAX = 4
#: Seconds to wait for a pooled connection before calling Postgres unavailable.
DB_CONNECT_TIMEOUT = 10.0

#: Priority names and their numbers; higher runs first.
PRIORITIES = {"critical": 100, "high": 75, "normal": 50, "low": 25, "idle": 0}
#: Priority of a task that names none.
DEFAULT_PRIORITY = 50
#: Estimate (minutes) of a task that names none.
DEFAULT_ESTIMATE = 30.0

#: Where ``planfleet up`` keeps embedded Postgres and Redis data, pid files and logs.
STATE_DIR = ".planfleet"
#: Address the control plane binds by default.
API_HOST = "127.0.0.1"
#: Port of the control plane.
API_PORT = 8080
#: ``planfleet up``: seconds before restarting a process that died (doubling with each quick
#: death), at most RESTART_CAP; one that ran RESTART_HEALTHY_AFTER seconds starts over at base
RESTART_BASE = 0.5
RESTART_CAP = 30.0
RESTART_HEALTHY_AFTER = 30.0
#: ``planfleet up``: seconds its processes get to stop after SIGTERM before SIGKILL
STOP_GRACE = 10.0
#: ``POST /api/plan`` requests planned at once by one API process; more answer 429
PLAN_CONCURRENCY = 2

#: Windmill script a task runs when neither it nor its solver names one.
DEFAULT_SCRIPT = "f/planner/solver_dispatch"

#: Attempts of a step before it fails for good.
STEP_MAX_ATTEMPTS = 3
#: First retry delay of a step, seconds; doubles each attempt (with jitter) up to the cap.
STEP_RETRY_BASE = 30.0
#: Longest retry delay of a step, seconds.
STEP_RETRY_CAP = 3600.0
#: Seconds a step may run before it is failed as timed out.
STEP_TIMEOUT = 1800.0
#: Seconds past a step's timeout before the build worker cancels its job itself.
TIMEOUT_GRACE = 10.0
#: Seconds a quality check (a task's ``qa`` script) may run.
QA_TIMEOUT = 300.0
#: A timed-out step's next attempt gets its timeout multiplied by this ...
TIMEOUT_FACTOR = 2.0
#: ... up to this many seconds.
TIMEOUT_CAP = 4 * 1800.0
#: Seconds between the tracker's looks at the fleet's running steps.
BUILD_POLL = 0.2
#: Seconds a building plan may go without a turn while one is due before the reconciler
#: enqueues one (also: a flow build's silent worker is taken over).
BUILD_STALE = 30.0
#: Steps the local runner runs at once (on this machine, across every plan).
RUNNER_SLOTS = 8
#: Seconds a ready step waits before its standing rises one priority level (aging: an idle
#: task stands level with a critical one after four of these).
AGING = 600.0
#: Seconds an RQ turn job may run (a turn is short; this only bounds a stuck one).
TURN_JOB_TIMEOUT = 600
#: Plans whose turns one RQ job takes (the tracker wakes plans in such batches).
TURN_BATCH = 64
#: Turns a build worker takes at once, in threads (a turn mostly waits on Postgres and the
#: dispatcher, so several overlap on one core).
TURN_THREADS = 4
#: Seconds a plan or input may sit `queued` before the reconciler enqueues it again.
REQUEUE_AFTER = 60.0
#: Seconds a planning input's lease (heartbeat every 2 s) may be silent before it is requeued.
PLAN_STALE = 30.0
#: Seconds between automatic prunes (when PLANFLEET_PRUNE_AFTER is set).
PRUNE_EVERY = 3600.0
#: Seconds between reconciler passes.
RECONCILE_INTERVAL = 10.0

#: Consecutive failures of one script that open its circuit (its steps wait).
CIRCUIT_THRESHOLD = 5
#: Seconds an open circuit waits before letting one trial step through.
CIRCUIT_COOLDOWN = 300.0

#: Windmill workspace used when none is configured.
WINDMILL_WORKSPACE = "admins"
#: Concurrent requests (and kept-alive connections) of one build worker to Windmill.
WINDMILL_CONCURRENCY = 8
#: Seconds between the tracker's looks at Windmill for the jobs it follows (two listings a look,
#: only while jobs run: a completion is seen within this time).
WINDMILL_POLL = 0.2
#: Seconds a request to Windmill may take.
WINDMILL_TIMEOUT = 30.0
#: First delay (s) before a submission that failed for a transient reason is sent again;
#: doubles per failure up to WINDMILL_RETRY_CAP.
WINDMILL_RETRY_BASE = 1.0
WINDMILL_RETRY_CAP = 60.0
#: Seconds after which a tracked job that neither ran nor finished is looked up on its own
#: (and then at doubling intervals up to 10 times this): catches jobs Windmill lost.
WINDMILL_CHECK_AFTER = 30.0
#: Folder of the flows planfleet creates in flow build mode (``f/planfleet/plan_<id>``).
WINDMILL_FLOW_FOLDER = "f/planfleet"
