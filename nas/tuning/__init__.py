"""fsnas tune: many searches or retrains of one config through Ray Tune (local, one GPU box, or a cluster).

``space`` turns the config's ``tune.space`` into Tune's search space (checked value by value first);
``trial`` is the function each trial runs (an ordinary fsnas run folder, reported to Tune); ``driver``
starts, resumes and reports an experiment; ``results`` writes the table and the Pareto front."""
