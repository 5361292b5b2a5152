"""Circuit breakers seen from a build: after ``threshold`` consecutive failures of one script
its steps wait for ``cooldown`` seconds, then one trial step goes; its success closes the
circuit, its failure opens it again. The state is shared in Postgres (``circuits``); a build
reads it at most every :data:`REFRESH` seconds and writes only when something changes."""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from planfleet import models
from planfleet.schema.repositories import Store

log = structlog.get_logger(__name__)
#: Seconds a build trusts what it read about its scripts' circuits.
REFRESH = 1.0


class Breakers:
    def __init__(self, store: Store, scripts: set[str], *, threshold: int,
                 cooldown: float) -> None:
        self.store = store
        self.scripts = sorted(scripts)
        self.threshold, self.cooldown = threshold, cooldown
        self._known: dict[str, models.Circuit] = {}
        self._read_at = -REFRESH

    def _circuit(self, script: str) -> tuple[models.Circuit | None, float]:
        """The circuit as last read, and the seconds since it was read."""
        now = time.monotonic()
        if now - self._read_at >= REFRESH:
            self._known = self.store.circuits.get(self.scripts)
            self._read_at = now
        return self._known.get(script), now - self._read_at

    def cover(self, scripts: Iterable[str]) -> None:
        """Follow these scripts' circuits too (read at the next look when one is new)."""
        new = set(scripts).difference(self.scripts)
        if new:
            self.scripts = sorted({*self.scripts, *new})
            self.forget()

    def forget(self) -> None:
        """Read the circuits again at the next look (another process may have opened one)."""
        self._read_at = -REFRESH

    def allows(self, script: str) -> bool:
        """Whether a step of ``script`` may start now (the first step after a cool-down is
        the circuit's one trial)."""
        circuit, age = self._circuit(script)
        if circuit is None or circuit.state == "closed":
            return True
        waited = (circuit.open_for if circuit.state == "open" else circuit.idle_for) + age
        if waited < self.cooldown or not self.store.circuits.trial(script, self.cooldown):
            return False
        log.info("circuit_trial", script=script, failures=circuit.failures)
        self._read_at = -REFRESH  # read the half-open state back before the next step
        return True

    def failed(self, script: str, error: str, *, misconfigured: bool = False) -> None:
        state, failures, opened = self.store.circuits.failure(
            script, error, threshold=self.threshold, force=misconfigured)
        if opened:
            log.error("circuit_opened", script=script, failures=failures,
                      cooldown=self.cooldown, error=error[:300])
        self._read_at = -REFRESH

    def succeeded(self, script: str) -> None:
        circuit, _ = self._circuit(script)
        if circuit is None or (circuit.state == "closed" and circuit.failures == 0):
            return  # nothing to clear: no write
        was = self.store.circuits.success(script)
        if was not in (None, "closed"):
            log.info("circuit_closed", script=script)
        self._read_at = -REFRESH
