"""One log line per trial state change of an experiment (imported once Ray is set up).  The CLI writes this
logger's info lines to stdout as they are (``fsnas -q`` quiets them with the other info)."""

from __future__ import annotations

import logging

from ray import tune

log = logging.getLogger(__name__)


class TrialLines(tune.Callback):
    def say(self, trial, what: str) -> None:
        values = ", ".join(f"{k}={v}" for k, v in trial.config.get("overrides", {}).items())
        log.info("trial %s %s%s", trial.trial_id, what, f" ({values})" if values else "")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.say(trial, "started")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.say(trial, "finished" if (trial.last_result or {}).get("fsnas_final") else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.say(trial, "failed")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.say(trial, "failed; retrying from its last checkpoint")
