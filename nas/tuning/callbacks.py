"""The console output of an experiment: one line per trial state change (imported once Ray is set up)."""

from __future__ import annotations

from ray import tune


class TrialLines(tune.Callback):
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def say(self, trial, what: str) -> None:
        if not self.quiet:
            values = ", ".join(f"{k}={v}" for k, v in trial.config.get("overrides", {}).items())
            print(f"trial {trial.trial_id} {what}{f' ({values})' if values else ''}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.say(trial, "started")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.say(trial, "finished" if (trial.last_result or {}).get("fsnas_final") else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.say(trial, "failed")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.say(trial, "failed; retrying from its last checkpoint")
