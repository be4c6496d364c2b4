"""Stylized datasets: a whole dataset on Ray Data, `fast-nst stylize-dataset input=DIR output=DIR ...`
(conf/stylize_dataset/stylize_dataset.yaml; also `python -m fast_nst.dataset`), and style
augmentation inside someone else's training loop.

    plan.py           each image's output path and painting (seeded, from its relative path), done checks
    worker.py         StylizeWorker: the actor that loads the network once and stylizes batches
    manifest.py       manifest.csv: image, painting, model, seconds, status per image
    job.py            the Ray Data job: local or on a cluster, progress, resume, summary
    local_cluster.py  a loopback multi-node Ray cluster (benchmarks and tests)
    augment.py        StyleAugment: random Magenta style embeddings as a torchvision v2 transform

May import: fast_nst.io, fast_nst.kinds, fast_nst.stylize, fast_nst.training (progress formatting).
Nothing in the library imports it.

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
