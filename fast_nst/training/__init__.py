"""Training: a network of any kind against its frozen loss network, with Lightning.

    run.py            the train command's body: data, module, loggers, callbacks and Trainer from a config
    module.py         the LightningModule: optimizer and schedule from config, logging, validation grid
    callbacks.py      export at the end of training; progress.py the progress bar; loggers.py W&B, CSV
    guards.py         stop on a NaN/inf or diverging loss, or on Ctrl-C / SIGTERM (saving last.ckpt)
    checkpoint_io.py  Lightning checkpoints written atomically, read weights_only
    warm_start.py     what a network starts from: rows / rows_then_all / convs of a multi-style export
    time_budget.py    train for N minutes, a checkpoint every M minutes (wall or CPU clock)
    distill.py        distillation: a student trained on a teacher export's objective and outputs
    data/             training photos (and paintings, for the any-painting kinds)

May import: fast_nst.io, fast_nst.weights, fast_nst.models, fast_nst.kinds, fast_nst.stylize.
"""
