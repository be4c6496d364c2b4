"""stylize-dataset (fast_nst.dataset): the plan, the manifest and the options without Ray (fast);
the job itself on Ray in-process with Magenta's network (slow: Ray workers, and the weights).

The slow tests run the job on 40 photos (the bundled ones, shrunk, in four folders) plus a
corrupt and an empty file, with 2 actors, one of which dies once mid-batch; and a run killed
with SIGKILL halfway, then run again."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from conftest import ROOT, compose
from fast_nst.dataset.local_cluster import kill_session
from fast_nst.dataset.manifest import ManifestLog, compact, read_rows
from fast_nst.dataset.plan import assign_painting, is_done, mirror_outputs, plan, remove_stale_temporaries
from fast_nst.dataset.worker import StylizeWorker
from fast_nst.io.errors import ConfigError

PAINTINGS = ROOT / "assets" / "styles"


# ------------------------------------------------------------------ the plan (no Ray)
def test_painting_assignment_is_a_pinned_function_of_seed_and_path():
    paintings = [f"p{i}" for i in range(10)]
    images = [f"n{c:08d}/img_{i}.JPEG" for c in range(4) for i in range(50)]
    first = {im: assign_painting(im, paintings, seed=0) for im in images}
    # any order, any process: sha256 of seed and path, not Python's salted hash() (values pinned)
    assert {im: assign_painting(im, paintings, seed=0) for im in reversed(images)} == first
    assert [assign_painting("n01440764/a.JPEG", paintings, s) for s in (0, 1, 2)] == ["p9", "p3", "p3"]
    assert len(set(first.values())) == 10  # 200 images use every painting
    other = {im: assign_painting(im, paintings, seed=1) for im in images}
    assert sum(first[im] != other[im] for im in images) > 150  # another seed, another draw


def test_plan_mirrors_the_tree_and_draws_by_relative_path(tmp_path):
    for root in ("a", "b"):
        for rel in ("x/1.jpg", "x/1.png", "y/z/2.webp"):
            (tmp_path / root / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / root / rel).touch()
    files = lambda root: sorted(p for p in (tmp_path / root).rglob("*") if p.is_file())  # noqa: E731
    out = tmp_path / "out"
    assert [o.relative_to(out).as_posix() for o in mirror_outputs(files("a"), tmp_path / "a", out, "same")] == \
        ["x/1.jpg", "x/1.png", "y/z/2.png"]
    assert [o.relative_to(out).as_posix() for o in mirror_outputs(files("a"), tmp_path / "a", out, "jpg")] == \
        ["x/1.jpg", "x/1_png.jpg", "y/z/2.jpg"]  # two inputs never share an output
    paintings = [str(p) for p in sorted(PAINTINGS.glob("*.jpg"))]
    a = plan(files("a"), tmp_path / "a", out, "same", paintings, seed=3)
    b = plan(files("b"), tmp_path / "b", tmp_path / "elsewhere", "same", paintings, seed=3)
    assert [i.painting for i in a] == [i.painting for i in b]  # the folder's location does not matter
    assert [i.image for i in a] == ["x/1.jpg", "x/1.png", "y/z/2.webp"]


@pytest.mark.parametrize("output", ["in", "in/sub/out", "in/../in", "paintings/x"])
def test_an_output_folder_in_the_input_or_paintings_folder_is_refused(tmp_path, output):
    from fast_nst.dataset.job import check_options
    from fast_nst.io.errors import OutputIsInputError

    for d in ("in", "paintings"):
        (tmp_path / d).mkdir()
    over = [f"input={tmp_path / 'in'}", f"paintings={tmp_path / 'paintings'}"]
    with pytest.raises(OutputIsInputError, match="choose an output folder outside input= and paintings=") as err:
        check_options(compose("stylize_dataset", [*over, f"output={tmp_path / output}"]))
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    check_options(compose("stylize_dataset", [*over, f"output={tmp_path / 'in_stylized'}"]))  # a sibling is fine


def test_done_means_a_file_that_decodes_to_the_end(tmp_path):
    im = Image.open(ROOT / "assets" / "photos" / "coffee.jpg").convert("RGB")
    im.save(tmp_path / "a.jpg", quality=90)
    im.save(tmp_path / "a.png")
    for name in ("a.jpg", "a.png"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) * 2 // 3])
        assert is_done(tmp_path / name)
        assert not is_done(tmp_path / f"cut_{name}"), name  # a copy cut short is redone
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "text.jpg").write_text("not an image")
    assert not any(is_done(tmp_path / n) for n in ("empty.jpg", "text.jpg", "missing.jpg"))


def test_stale_temporaries_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "d").mkdir()
    keep = [tmp_path / "d" / n for n in ("a.jpg", ".hidden.jpg", "b.tmp", ".a.jpg.tmp")]
    stale = [tmp_path / "d" / ".a.jpg.k2j_8xq1.tmp", tmp_path / ".manifest.csv.abcdefgh.tmp"]
    for p in keep + stale:
        p.touch()
    assert remove_stale_temporaries(tmp_path) == 2
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


# ------------------------------------------------------------------ the manifest
def _row(image, status, seconds="0.1"):
    return {"image": image, "output": image, "painting": "p", "model": "m", "seconds": seconds,
            "status": status, "worker": "h:1", "error": ""}


def test_manifest_survives_a_cut_line_and_keeps_one_row_per_image(tmp_path):
    path = tmp_path / "manifest.csv"
    log = ManifestLog(path)
    log.write([_row("a", "ok"), _row("b", "failed"), _row("c", "unreadable")])
    log.close()
    with open(path, "a") as f:
        f.write("d,d,p,m,0.3,o")  # killed mid-row
    log = ManifestLog(path)  # the rerun
    log.write([_row("a", "skipped", ""), _row("b", "ok"), _row("d", "ok")])
    log.close()
    assert len(read_rows(path)) == 6  # the cut line is dropped
    rows = compact(path, ["d", "c", "b", "a"])
    assert list(rows) == ["d", "c", "b", "a"]
    assert {k: r["status"] for k, r in rows.items()} == {"a": "ok", "b": "ok", "c": "unreadable", "d": "ok"}
    assert rows["a"]["seconds"] == "0.1"  # the run that did the work, not the rerun that skipped it
    with open(path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


# ------------------------------------------------------------------ options (no Ray, no network)
@pytest.mark.parametrize("overrides,expected", [
    (["strength=2"], "strength=2: must be between 0"),
    (["format=tiff"], "format=tiff: must be one of same, jpg, png, webp"),
    (["quality=0"], "quality=0: JPEG/WebP quality"),
    (["batch_size=0"], "batch_size=0: must be a positive integer"),
    (["actors=0"], "actors=0: must be a positive integer"),
    (["gpus=-1"], "gpus=-1: GPUs per actor"),
])
def test_options_are_checked_before_ray_or_the_network(tmp_path, overrides, expected):
    from fast_nst.dataset.job import check_options

    (tmp_path / "in").mkdir()
    cfg = compose("stylize_dataset", [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", *overrides])
    with pytest.raises(ConfigError) as err:
        check_options(cfg)
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_input_and_output_are_required_and_checked(tmp_path):
    from fast_nst.dataset.job import check_options

    with pytest.raises(ConfigError, match="input is required"):
        check_options(compose("stylize_dataset", [f"output={tmp_path}"]))
    with pytest.raises(ConfigError, match="no such folder"):
        check_options(compose("stylize_dataset", [f"input={tmp_path / 'nope'}", f"output={tmp_path / 'o'}"]))
    with pytest.raises(ConfigError, match="is the input folder"):
        check_options(compose("stylize_dataset", [f"input={tmp_path}", f"output={tmp_path}"]))


def test_the_command_says_what_is_wrong_in_one_line_and_exits_2(tmp_path):
    """python -m fast_nst.dataset goes through fast_nst.cli: no traceback, exit 2, before Ray starts."""
    (tmp_path / "in").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "fast_nst.dataset", f"input={tmp_path / 'in'}",
                        f"output={tmp_path / 'in' / 'out'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: output="), r.stderr
    assert "lies inside the input folder" in r.stderr and not (tmp_path / "in" / "out").exists()


def test_paintings_fit_the_kind():
    from fast_nst.dataset.job import model_paintings
    from fast_nst.stylize.stylizer import Stylizer

    starry = Stylizer.load("starry_night", device="cpu")
    cfg = SimpleNamespace(ckpt="starry_night", paintings=None)
    assert model_paintings(cfg, starry)[:2] == (False, ["starry_night"])  # a per-style network: its own
    with pytest.raises(ConfigError, match="paints only its own painting"):
        model_paintings(SimpleNamespace(ckpt="starry_night", paintings=str(PAINTINGS)), starry)
    anything = SimpleNamespace(net=SimpleNamespace(arbitrary_style=True), kind="magenta", styles=[])
    with pytest.raises(ConfigError, match="add paintings=DIR"):
        model_paintings(SimpleNamespace(ckpt="magenta", paintings=None), anything)
    arbitrary, files, _ = model_paintings(SimpleNamespace(ckpt="magenta", paintings=str(PAINTINGS)), anything)
    assert arbitrary and [Path(f).name for f in files] == sorted(p.name for p in PAINTINGS.glob("*.jpg"))


# ------------------------------------------------------------------ the job on Ray (slow)
def _photos(folder: Path, n: int = 40, side: int = 48) -> list[str]:
    """n small photos (`side` px) in four sub-folders, made from the bundled photos; their relative paths."""
    src = sorted((ROOT / "assets" / "photos").glob("*.jpg"))
    rels = []
    for i in range(n):
        im = Image.open(src[i % len(src)]).convert("RGB")
        im.thumbnail((side + 4 * (i % 3), side))  # a few sizes, so batches mix shapes
        rel = f"class{i % 4}/img{i:02d}.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        im.save(folder / rel, quality=90)
        rels.append(rel)
    return rels


class DiesOnceWorker(StylizeWorker):
    """Logs every write to $DIES_ONCE_DIR/writes.log; the actor that meets DIE_ON first writes the
    images of its batch before it, then kills its own process (os._exit), once."""

    DIE_ON = "class1/img13.jpg"

    def write(self, image, path: str) -> None:
        super().write(image, path)
        with open(Path(os.environ["DIES_ONCE_DIR"]) / "writes.log", "a") as f:  # O_APPEND: whole lines
            f.write(f"{path}\n")

    def __call__(self, batch):
        images = list(map(str, batch["image"]))
        marker = Path(os.environ["DIES_ONCE_DIR"]) / "died"
        if self.DIE_ON in images and not marker.exists():
            marker.touch()
            if images.index(self.DIE_ON):
                super().__call__({k: v[: images.index(self.DIE_ON)] for k, v in batch.items()})
            os._exit(1)
        return super().__call__(batch)


def _job_cfg(src: Path, dst: Path, *extra: str):
    return compose("stylize_dataset", [f"input={src}", f"output={dst}", "ckpt=magenta", f"paintings={PAINTINGS}",
                                       "num_cpus=3", "object_store_mb=300", "seed=7", *extra])


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, magenta_weights_cache):
    """The job on 40 photos + 2 bad files and a broken link, 2 actors, batches of 4, one actor dying once."""
    from ray import cloudpickle

    from fast_nst.dataset.job import run_job

    tmp = tmp_path_factory.mktemp("dataset")
    src, dst = tmp / "photos", tmp / "stylized"
    rels = _photos(src)
    (src / "class2" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    (src / "class3" / "empty.png").touch()
    (src / "class0" / "moved.jpg").symlink_to(tmp / "no_such_photo.jpg")  # a link to nothing: found while listing
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors need DiesOnceWorker's code
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAST_NST_CACHE", str(magenta_weights_cache))  # Ray's processes inherit both
        mp.setenv("DIES_ONCE_DIR", str(tmp))
        summary = run_job(_job_cfg(src, dst, "actors=2", "batch_size=4", "max_size=48"), worker_cls=DiesOnceWorker)
    return SimpleNamespace(src=src, dst=dst, rels=rels, tmp=tmp, summary=summary,
                           rows={r["image"]: r for r in read_rows(dst / "manifest.csv")})


def test_every_image_is_written_exactly_once_with_two_actors(finished_job):
    j = finished_job
    assert (j.tmp / "died").exists()  # an actor did die mid-batch, and Ray retried its batch
    written = sorted(Path(p).relative_to(j.dst).as_posix() for p in (j.tmp / "writes.log").read_text().split())
    assert written == sorted(j.rels)  # each image once: the retried batch skipped what was already there
    outputs = sorted(p.relative_to(j.dst).as_posix() for p in j.dst.rglob("*") if p.is_file())
    assert outputs == sorted(j.rels + ["manifest.csv"])  # mirrored, nothing else (no temporaries)
    assert all(is_done(j.dst / r) for r in j.rels)
    assert Image.open(j.dst / j.rels[0]).size == Image.open(j.src / j.rels[0]).size
    assert {j.rows[r]["status"] for r in j.rels} <= {"ok", "skipped"}
    assert len({j.rows[r]["worker"] for r in j.rels}) >= 2  # both actors worked
    assert j.summary.counts.get("failed", 0) == 0


def test_the_painting_of_each_image_is_the_seeded_draw(finished_job):
    j = finished_job
    paintings = [str(p) for p in sorted(PAINTINGS.glob("*.jpg"))]
    for r in j.rels:
        expected = Path(assign_painting(r, paintings, seed=7)).name
        assert j.rows[r]["painting"] == expected and j.rows[r]["model"] == "magenta"
    assert len({j.rows[r]["painting"] for r in j.rels}) > 3


def test_unreadable_inputs_are_listed_and_not_fatal(finished_job):
    j = finished_job
    for name in ("class2/corrupt.jpg", "class3/empty.png"):
        row = j.rows[name]
        assert row["status"] == "unreadable" and name.split("/")[1] in row["error"], row
    assert "empty file" in j.rows["class3/empty.png"]["error"]
    assert j.rows["class0/moved.jpg"]["status"] == "unreadable" and "moved.jpg" in j.rows["class0/moved.jpg"]["error"]
    assert j.summary.counts["unreadable"] == 3
    assert len(j.rows) == 43  # one row per input


def test_a_killed_run_resumes_without_redoing_finished_images(tmp_path, magenta_weights_cache):
    from fast_nst.dataset.job import run_job

    src, dst = tmp_path / "photos", tmp_path / "stylized"
    # enough work after the 12th image that the kill lands mid-job on a fast machine too (40 photos
    # of 48 px were all written before the kill in CI's run)
    rels = _photos(src, n=120, side=192)
    args = [f"input={src}", f"output={dst}", "ckpt=magenta", f"paintings={PAINTINGS}", "actors=1",
            "batch_size=1", "num_cpus=2", "object_store_mb=300", "progress_every_s=1"]
    env = dict(os.environ, FAST_NST_CACHE=str(magenta_weights_cache), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fast_nst.dataset", *args], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while sum(is_done(dst / r) for r in rels) < 12:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run wrote too little in 15 minutes"
            time.sleep(0.5)
    finally:
        kill_session(proc.pid)  # the driver and the Ray it started, mid-work, all with SIGKILL
        proc.wait()
    before = {r: (dst / r).stat() for r in rels if is_done(dst / r)}
    assert 12 <= len(before) < len(rels), "the kill came after the end: nothing left to resume"

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAST_NST_CACHE", str(magenta_weights_cache))
        summary = run_job(compose("stylize_dataset", [*args, "actors=2", "batch_size=4", "num_cpus=3"]))
    assert all(is_done(dst / r) for r in rels)
    for r, st in before.items():  # finished before the kill: not written again
        now = (dst / r).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), r
    assert summary.counts["ok"] == len(rels) - len(before)
    assert summary.counts["skipped"] == len(before)
    rows = {r["image"]: r for r in read_rows(dst / "manifest.csv")}
    assert sorted(rows) == sorted(rels) and {r["status"] for r in rows.values()} <= {"ok", "skipped"}
    assert not [p for p in dst.rglob("*.tmp")]
    shutil.rmtree(src)
