"""Circuit breakers: the shared state in Postgres, and a build that waits on an open circuit."""

from __future__ import annotations

from planfleet import models
from planfleet.schema.repositories import Store
from tests.integration.conftest import Fleet
from tests.integration.test_pipeline import finished, plan_of


def test_the_circuit_opens_at_the_threshold_lets_one_trial_through_and_closes(
        store: Store) -> None:
    c = store.circuits
    assert c.failure("f/x", "boom 1", threshold=3) == ("closed", 1, False)
    assert c.failure("f/x", "boom 2", threshold=3) == ("closed", 2, False)
    assert c.failure("f/x", "boom 3", threshold=3) == ("open", 3, True)
    assert c.failure("f/x", "boom 4", threshold=3) == ("open", 4, False)  # stays, not re-opened
    assert not c.trial("f/x", cooldown=60)  # cooling down
    assert c.trial("f/x", cooldown=0)  # one trial...
    assert not c.trial("f/x", cooldown=60)  # ...and only one
    assert c.failure("f/x", "trial failed", threshold=3)[0] == "open"  # a failed trial reopens
    assert c.trial("f/x", cooldown=0)
    assert c.success("f/x") == "half_open"
    got = c.get(["f/x", "f/other"])
    assert list(got) == ["f/x"] and got["f/x"].state == "closed" and got["f/x"].failures == 0
    assert c.success("f/x") is None  # nothing to change
    kinds = [e.kind for e in store.events.list() if e.kind.startswith("circuit")]
    assert kinds == ["circuit_closed", "circuit_opened", "circuit_opened"]
    # a misconfiguration opens it at once
    assert c.failure("f/y", "401", threshold=5, force=True) == ("open", 1, True)


def test_steps_wait_while_their_scripts_circuit_is_open(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_CIRCUIT_THRESHOLD="2", PLANFLEET_CIRCUIT_COOLDOWN="1.5",
                     PLANFLEET_STEP_MAX_ATTEMPTS="5")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "A", "args": {"fail_times": 3, "sleep": 0}}]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    runs = [r["start"] for r in fleet.executions(p.id, "A")]
    assert len(runs) == 4
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    # attempts 1 and 2 fail back to back; the circuit opens: attempt 3 is the trial after the
    # cool-down, it fails and reopens it, attempt 4 waits again, succeeds and closes it
    assert gaps[0] < 1.4, gaps
    assert gaps[1] >= 1.4 and gaps[2] >= 1.4, gaps
    kinds = [e.kind for e in fleet.store.events.list() if e.kind.startswith("circuit")]
    assert kinds.count("circuit_opened") == 2 and kinds[0] == "circuit_closed"
    assert fleet.store.circuits.get(["f/test/work"])["f/test/work"].state == "closed"
