"""meta: few-shot data, episodes, learners, losses and evaluation for any nn.Module backbone."""
