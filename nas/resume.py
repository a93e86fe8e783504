"""What ``--resume`` checks before it continues a run: that the run is not finished, and that its config.yaml
still says what its checkpoints were made with, except for keys that are safe to change on resume."""

from __future__ import annotations

import logging

import yaml

from .checks.options import is_learning_rate
from .config import RunConfig
from .errors import RunFinished, UserError
from .runs import RunDir

log = logging.getLogger(__name__)

CHECKPOINTS = ("search", "pretrain", "last")  # every phase's resumable checkpoint
# safe to change on resume: what is evaluated, where it runs, how often it logs and checkpoints, and learning
# rates with their schedules (a diverged run resumes with a lower one; meta.optim_state applies it)
SAFE_PREFIXES = ("eval.", "device", "channels_last")
SAFE_NAMES = ("log_every", "checkpoint_every", "lr_step", "lr_gamma", "grad_clip")


def safe_to_change(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return key.startswith(SAFE_PREFIXES) or last in SAFE_NAMES or is_learning_rate(last)


def changed_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new), key=str)
                for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def check_resume(run: RunDir, cfg: RunConfig) -> None:
    if run.summary_path.is_file():
        raise RunFinished(f"{run.path} is finished (it has its summary.json); nothing was resumed or changed. "
                          f"Test it again with fsnas evaluate {run.path}, or start a new run")
    now = cfg.to_dict()
    for name in CHECKPOINTS:
        state = run.load_checkpoint(name, mmap=True)  # its config only: the tensors are not read
        if state is None or not state.get("config"):  # none yet, or written before checkpoints kept their config
            continue
        changed = changed_keys(yaml.safe_load(state["config"]), now)
        unsafe = [k for k in changed if not safe_to_change(k)]
        if unsafe:
            raise UserError(f"{run.config_path} differs from the config its {name} checkpoint was made with in "
                            f"{', '.join(unsafe[:8])}{' ...' if len(unsafe) > 8 else ''}: resuming would train the "
                            f"rest with other settings, or not fit the checkpoint. Restore those keys, or start a new "
                            f"run from the edited config (--out NEW). Keys that may change on resume: eval.*, device, "
                            f"learning rates and their schedule (lr, *_lr, lr_step, lr_gamma, grad_clip), log_every, "
                            f"checkpoint_every")
        if changed:
            log.info("resuming %s with changed %s", run.path, ", ".join(changed))
