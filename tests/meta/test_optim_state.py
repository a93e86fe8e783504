"""Resuming an optimizer and schedule: exact when the settings are those of the checkpoint, the config's own
(at the resumed step, momenta kept) when they changed."""

import torch

from meta.optim_state import load_optimizer_state


def trained(lr=0.1, gamma=0.5, steps=7):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.Adam([w], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, gamma)
    for _ in range(steps):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
        sched.step()
    return w, opt, sched


def fresh(lr, gamma):
    w = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.Adam([w], lr=lr)
    return opt, torch.optim.lr_scheduler.StepLR(opt, 3, gamma)


def test_same_settings_resume_exactly():
    _, opt, sched = trained()
    o, s = fresh(0.1, 0.5)
    assert load_optimizer_state(o, s, opt.state_dict(), sched.state_dict()) is False
    assert o.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 2
    assert s.state_dict() == sched.state_dict()
    assert torch.equal(o.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_a_lowered_rate_takes_effect_at_the_resumed_step_and_keeps_the_momenta():
    _, opt, sched = trained(lr=0.1, gamma=1e6)  # the diverging schedule
    o, s = fresh(0.01, 1.0)  # the config after the fix
    assert load_optimizer_state(o, s, opt.state_dict(), sched.state_dict()) is True
    assert o.param_groups[0]["lr"] == 0.01 and o.param_groups[0]["initial_lr"] == 0.01
    assert s.last_epoch == 7 and s.gamma == 1.0 and s.base_lrs == [0.01]
    assert torch.equal(o.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    s.step()  # and the schedule goes on from there with the new settings
    assert o.param_groups[0]["lr"] == 0.01
