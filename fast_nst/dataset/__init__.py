"""Stylize a whole dataset on Ray Data: `python -m fast_nst.dataset input=DIR output=DIR ...`
(conf/stylize_dataset/stylize_dataset.yaml).

    plan.py      each image's output path and painting (seeded, from its relative path), done checks
    worker.py    StylizeWorker: the actor that loads the network once and stylizes batches
    manifest.py  manifest.csv: image, painting, model, seconds, status per image
    job.py       the Ray Data job: local or on a cluster, progress, resume, summary

`run_job(cfg)` is the Python entry point (cfg: that config, composed). Ray is the optional extra
`scale`: pip install -e ".[scale]".
"""

from fast_nst.dataset.plan import assign_painting, is_done

__all__ = ["assign_painting", "is_done", "run_job"]


def __getattr__(name):
    if name == "run_job":  # lazy: importing the package stays cheap and Ray-free
        from fast_nst.dataset.job import run_job

        return run_job
    raise AttributeError(name)
