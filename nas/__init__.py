"""nas: the application: configs, run folders, training loop, search, latency, export, tuning, CLI."""
