"""Never lose a user's work (issue 23), one section per class of failure:

1. no output is written over an input, or inside a folder scanned for inputs;
2. a run whose loss ran away, or whose network paints one flat colour, stops and exports nothing;
3. a truncated video (an MP4 with its index at the front, cut short) is refused, not half-stylized;
4. a video command runs again with the same output;
5. model and resume files that cannot be used are one line naming the file (exit 2), no traceback;
6. SIGINT and SIGTERM save last.ckpt at the end of the step, and ckpt_path=last resumes exactly;
7. the web page checks uploads as stylize.py does, with its own messages, and cleans up after itself;
8. animations, broken links, file modes, a full disk, non-ASCII arguments, an explicit max_steps.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import signal
import stat
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import ROOT, compose, run_script
from fast_nst.training.callbacks import ExportCallback
from fast_nst.training.checkpoint_io import AtomicCheckpointIO
from fast_nst.cli import EXIT_USAGE, check_overrides, run_cli
from fast_nst.io.errors import ConfigError, DiskFullError, DivergedError, OutputIsInputError, TrainingInterrupted
from fast_nst.io.export import export_network
from fast_nst.kinds import load_network
from fast_nst.training.guards import StopOnSignal
from fast_nst.io.images import ImageTooLarge, list_images, open_image, save_image_atomic
from fast_nst.io.files import atomic_write
from fast_nst.kinds import get_kind
from fast_nst.io.paintings import Painting
from fast_nst.stylize.stylizer import Stylizer
from fast_nst.stylize.video import VideoError, stylize_video

MODEL = ROOT / "checkpoints" / "starry_night.safetensors"
PHOTO = ROOT / "assets" / "photos" / "chelsea_cat.jpg"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_net():
    torch.manual_seed(0)
    return get_kind("johnson")([Painting(name="tiny", image="x.jpg")], width=0.25, norm="instance",
                               upsample="nearest", num_res_blocks=1, tanh_scale=1.0)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    export_network(_tiny_net(), path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of three small photos, one in a sub-folder."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    src = Image.open(PHOTO).convert("RGB").resize((48, 32))
    src.save(d / "a.jpg")
    src.rotate(180).save(d / "b.png")
    src.transpose(Image.FLIP_LEFT_RIGHT).save(d / "sub" / "c.jpg")
    return d


def _stylize(tiny_export, *overrides):
    from fast_nst.stylize.command import run

    return run(compose("stylize", [f"ckpt={tiny_export}", "device=cpu", *overrides]))


# ---------------------------------------------------------------- 1. inputs are never overwritten
@pytest.mark.parametrize("case", ["same file", "same folder", "folder inside the input", "input's folder",
                                  "glob into its folder", "recursive glob", "link to the input folder",
                                  "other spelling"])
def test_no_output_lands_on_an_input_or_inside_a_scanned_folder(tiny_export, photos, tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(photos)
    args = {"same file": (f"input={photos / 'a.jpg'}", f"output={photos / 'a.jpg'}"),
            "same folder": (f"input={photos}", f"output={photos}"),
            "folder inside the input": (f"input={photos}", f"output={photos / 'out'}"),
            "input's folder": (f"input={photos / 'a.jpg'}", f"output={photos}"),
            "glob into its folder": (f"input={photos}/*.jpg", f"output={photos}"),
            "recursive glob": (f"input={photos}/**/*.jpg", f"output={photos / 'sub' / 'out'}"),
            "link to the input folder": (f"input={photos}", "output=link/out"),
            "other spelling": (f"input={photos / 'a.jpg'}", f"output={photos / 'sub' / '..' / 'a.jpg'}")}[case]
    before = _tree(photos)
    with pytest.raises(OutputIsInputError) as err:
        _stylize(tiny_export, *args)
    assert _tree(photos) == before  # nothing written or replaced
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert str(err.value).startswith("output=") and ("input" in str(err.value))


def test_outputs_beside_the_inputs_are_fine(tiny_export, photos, tmp_path):
    assert _stylize(tiny_export, f"input={photos / 'a.jpg'}", f"output={photos / 'a_starry.jpg'}") == 0
    assert _stylize(tiny_export, f"input={photos}/*.jpg", f"output={photos / 'out'}") == 0  # not matched by *.jpg
    assert _stylize(tiny_export, f"input={photos}", f"output={tmp_path / 'elsewhere'}") == 0
    assert (photos / "a_starry.jpg").is_file() and (photos / "out" / "a.jpg").is_file()


def test_video_and_optimize_refuse_their_inputs_too(tmp_path):
    from fast_nst.optimize.command import run as optimize

    clip = _clip(tmp_path / "clip.mp4", n=4)
    before = _digest(clip)
    with pytest.raises(OutputIsInputError):
        stylize_video(clip, tmp_path / "sub" / ".." / "clip.mp4", lambda x: x)
    photo = tmp_path / "p.jpg"
    Image.open(PHOTO).convert("RGB").resize((64, 48)).save(photo)
    with pytest.raises(OutputIsInputError, match="would be written over the input"):  # before the VGG loads
        optimize(compose("optimize", [f"content={photo}", "style=starry_night", f"output={photo}"]))
    assert _digest(clip) == before


def test_a_file_this_process_decoded_is_never_replaced(tmp_path):
    """The backstop under every atomic write: a tool that plans no check still cannot replace an
    input it read, however the path is spelled."""
    photo = tmp_path / "p.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(photo)
    (tmp_path / "alias").symlink_to(tmp_path)
    im = open_image(photo)
    with pytest.raises(OutputIsInputError, match="is an input of this run"):
        save_image_atomic(im, tmp_path / "alias" / "p.png")
    assert np.asarray(Image.open(photo)).tolist() == np.asarray(im).tolist()
    save_image_atomic(im, tmp_path / "copy.png")  # other names are fine
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_writes_graphs_beside_its_checkpoint_and_refuses_a_graph_as_its_input(tiny_export, tmp_path):
    """`python -m fast_nst export` names its outputs from the checkpoint (<name>.onnx,
    <name>_int8.onnx): the checkpoint is never among them, and a graph given as ckpt is refused
    before any work."""
    from fast_nst.stylize.export_command import run as export_run

    before = _digest(tiny_export)
    cfg = compose("export", [f"ckpt={tiny_export}", "runtimes=[onnx]", "check=false"])
    assert export_run(cfg) == 0 and (tiny_export.parent / "tiny.onnx").is_file()
    assert _digest(tiny_export) == before
    graph = tiny_export.parent / "tiny.onnx"
    with pytest.raises(ConfigError, match="export takes a .safetensors export, got tiny.onnx"):
        export_run(compose("export", [f"ckpt={graph}", "runtimes=[onnx]"]))


# ---------------------------------------------------------------- 2. divergence
def _train_cfg(tmp_path, vgg16_weights, *overrides):
    from omegaconf import open_dict

    from hydra.core.hydra_config import HydraConfig

    photos = tmp_path / "train_photos"
    photos.mkdir(exist_ok=True)
    for p in sorted((ROOT / "assets" / "photos").glob("*.jpg"))[:6]:
        Image.open(p).convert("RGB").resize((64, 48)).save(photos / p.name)
    cfg = compose("train", ["logger=none", f"run_dir={tmp_path / 'run'}", f"export.dir={tmp_path / 'ck'}",
                            "data=folder", f"data.root={photos}", "data.image_size=32", "data.batch_size=2",
                            "data.num_workers=0", "data.val_size=2", "model.width=0.25", "model.num_res_blocks=1",
                            "loss.style_size=64", f"loss_net.weights={vgg16_weights}", "trainer.accelerator=cpu",
                            "trainer.val_check_interval=1000", "callbacks.progress_bar.log_every_s=1000",
                            *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_a_loss_that_runs_away_stops_training_and_exports_nothing(tmp_path, vgg16_weights, caplog):
    """optim.lr=1e6: the loss jumps ~100x at the first step and stays there, finite; the guard
    (a shorter patience than the default, for speed) stops the run before max_steps."""
    from fast_nst.training.run import train

    cfg = _train_cfg(tmp_path, vgg16_weights, "optim.lr=1e6", "trainer.max_steps=60",
                     "callbacks.divergence_guard.steps=8")
    with caplog.at_level(logging.INFO, logger="fast_nst"), pytest.raises(DivergedError) as err:
        train(cfg)
    msg = str(err.value)
    assert "the loss diverged" in msg and "optim.lr, now 1e+06" in msg and "loss.style_weight" in msg, msg
    step = int(msg.split("training stopped at step ")[1].split(":")[0])
    assert 8 < step < 30, msg
    assert err.value.exit_code == 1 and not err.value.weights_usable
    assert not list((tmp_path / "ck").glob("*.safetensors"))
    assert "done:" not in caplog.text


def test_a_network_that_paints_one_flat_colour_is_never_exported(tmp_path, vgg16_weights, caplog):
    """Too few steps for the loss check to fire: the check of the export finds the flat output,
    and the earlier export of that name stays as it was."""
    from fast_nst.training.run import train

    cfg = _train_cfg(tmp_path, vgg16_weights, "optim.lr=1e6", "trainer.max_steps=4")
    earlier = tmp_path / "ck" / f"{cfg.export.name}.safetensors"
    export_network(_tiny_net(), earlier)
    before = _digest(earlier)
    with caplog.at_level(logging.INFO, logger="fast_nst"), pytest.raises(DivergedError, match="flat pictures"):
        train(cfg)
    assert _digest(earlier) == before and "done:" not in caplog.text


def test_a_normal_run_is_not_stopped(tmp_path, vgg16_weights, caplog):
    """The default factor with a patience of 8 steps (stricter than the default 50): an ordinary
    run's loss falls fast at first and is noisy from batch to batch, and never trips it."""
    from fast_nst.training.run import train

    cfg = _train_cfg(tmp_path, vgg16_weights, "trainer.max_steps=40", "callbacks.divergence_guard.steps=8")
    with caplog.at_level(logging.INFO, logger="fast_nst"):
        result = train(cfg)
    assert result["global_step"] == 40 and Path(result["export"]).is_file() and "done:" in caplog.text


# ---------------------------------------------------------------- 3. and 4. video
def _clip(path: Path, n: int = 30, faststart: bool = True, w: int = 64, h: int = 48) -> Path:
    """H.264 with textured frames; `faststart`: the index (moov) before the data, as phones and
    web downloads write MP4s, so a file cut short still opens."""
    out = av.open(str(path), "w", options={"movflags": "faststart"} if faststart and path.suffix == ".mp4" else {})
    v = out.add_stream("libx264", rate=30)
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(n):
        out.mux(v.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), format="rgb24")))
    out.mux(v.encode(None))
    out.close()
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_truncated_video_is_refused_and_leaves_nothing(tmp_path, suffix, keep):
    full = _clip(tmp_path / f"full{suffix}")
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    dst = tmp_path / "out" / "o.mp4"
    with pytest.raises(VideoError, match="truncated") as err:
        stylize_video(cut, dst, lambda x: x, measure_flicker=False)
    assert str(cut) in str(err.value) and "re-download" in str(err.value)
    assert not dst.exists() and not list(dst.parent.glob(".*"))
    assert stylize_video(full, dst, lambda x: x, measure_flicker=False).frames == 30  # the whole file passes


def test_stylize_py_and_the_page_refuse_a_truncated_video(tiny_export, tmp_path, capsys):
    from fast_nst.app.studio import Studio

    full = _clip(tmp_path / "full.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
    assert _stylize(tiny_export, f"input={cut}", f"output={tmp_path / 'o.mp4'}") == 1
    err = capsys.readouterr().err
    assert "cut.mp4: truncated" in err and "of the 30 frames" in err and not (tmp_path / "o.mp4").exists()
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.safetensors").write_bytes(tiny_export.read_bytes())
    with pytest.raises(VideoError, match="truncated"):
        Studio(models, device="cpu", output_dir=tmp_path / "page").stylize_video(cut, str(models / "tiny.safetensors"))


def test_the_same_video_command_runs_twice(tiny_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = _clip(tmp_path / "clip.mp4", n=4)
    for _ in range(2):  # the second run finds out.mp4 there: a file, not a folder
        assert _stylize(tiny_export, f"input={clip}", "output=out.mp4") == 0
    assert (tmp_path / "out.mp4").is_file()
    assert _stylize(tiny_export, f"input={clip}", "output=videos") == 0  # a folder still works
    assert (tmp_path / "videos" / "clip.mp4").is_file()


# ---------------------------------------------------------------- 5. files that cannot be loaded
def _bad_models(tmp_path: Path, tiny_export: Path) -> dict[str, Path]:
    from fast_nst.io.export import read_export

    info = read_export(tiny_export)
    tensors = load_file(str(tiny_export))
    bad = {}
    shapes = {k: torch.zeros(*(s * 2 for s in v.shape)) for k, v in tensors.items()}
    save_file(shapes, str(tmp_path / "shapes.safetensors"), metadata=info.metadata())
    bad["shapes"] = tmp_path / "shapes.safetensors"
    meta = {**info.metadata(), "fast_nst.kind": "no_such_kind"}
    save_file(tensors, str(tmp_path / "kind.safetensors"), metadata=meta)
    bad["kind"] = tmp_path / "kind.safetensors"
    meta = {**info.metadata(), "fast_nst.network": json.dumps({**info.network, "colour": 3})}
    save_file(tensors, str(tmp_path / "config.safetensors"), metadata=meta)
    bad["config"] = tmp_path / "config.safetensors"
    data = tiny_export.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) * 2 // 3])
    bad["cut"] = tmp_path / "cut.safetensors"
    (tmp_path / "junk.onnx").write_bytes(os.urandom(2000))
    bad["onnx"] = tmp_path / "junk.onnx"
    return bad


@pytest.mark.parametrize("case", ["shapes", "kind", "config", "cut", "onnx"])
def test_a_model_file_that_cannot_be_used_is_one_line_naming_it_exit_2(tiny_export, tmp_path, case, capsys):
    from fast_nst.stylize.command import run

    bad = _bad_models(tmp_path, tiny_export)[case]
    with pytest.raises(ConfigError) as err:
        Stylizer.load(bad, device="cpu")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    cfg = compose("stylize", [f"ckpt={bad}", f"input={PHOTO}", f"output={tmp_path / 'o.jpg'}", "device=cpu"])
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: run(cfg))
    assert code.value.code == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), lines


def test_a_damaged_painting_is_one_line_before_training(tmp_path):
    from fast_nst.kinds.base import painting_tensor
    from fast_nst.io.validate import validate_train

    painting = tmp_path / "painting.jpg"
    painting.write_bytes(PHOTO.read_bytes()[:300])  # a header, then nothing
    with pytest.raises(ConfigError, match="painting.jpg"):
        painting_tensor(Painting(name="p", image=str(painting)), 64)
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a painting")
    with pytest.raises(ConfigError, match="style.image=.*notes.jpg: not an image"):
        validate_train(compose("train", [f"style.image={junk}"]))


@pytest.mark.parametrize("case", ["garbage", "empty", "cut", "an export"])
def test_a_checkpoint_that_cannot_be_resumed_is_one_line_naming_it(tmp_path, tiny_export, case):
    path = tmp_path / "bad.ckpt"
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 3}, good)
    path.write_bytes({"garbage": b"\x00garbage" * 50, "empty": b"", "cut": good.read_bytes()[:700],
                      "an export": tiny_export.read_bytes()}[case])
    with pytest.raises(ConfigError) as err:
        AtomicCheckpointIO().load_checkpoint(path)
    assert f"ckpt_path={path}" in str(err.value) and "\n" not in str(err.value)
    assert "arbitrary code" not in str(err.value)  # damaged, not a refused pickle


def test_resuming_after_changing_the_network_names_the_option(tmp_path, vgg16_weights):
    from fast_nst.training.run import train

    train(_train_cfg(tmp_path, vgg16_weights, "trainer.max_steps=2"))
    last = next((tmp_path / "ck" / "runs").rglob("last.ckpt"))
    cfg = _train_cfg(tmp_path, vgg16_weights, "trainer.max_steps=4", "model.width=0.125", "ckpt_path=last")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    msg = str(err.value)
    assert msg.startswith(f"ckpt_path={last}") and "model.width=0.25 (now 0.125)" in msg and "\n" not in msg, msg


# ---------------------------------------------------------------- 6. SIGINT / SIGTERM
class Counting(pl.LightningModule):
    """A real tiny transformer; at SIGNAL_AT a signal arrives in the middle of the step."""

    def __init__(self, signum: int | None = None, at: int = 3):
        super().__init__()
        self.signum, self.at = signum, at
        self.save_hyperparameters({"loss": {}, "loss_net": {}})
        self.net = _tiny_net()
        self.vgg_source = "none"

    def training_step(self, batch, batch_idx):
        out = self.net(batch)
        if self.signum is not None and self.global_step + 1 == self.at:
            os.kill(os.getpid(), self.signum)  # delivered now, in the middle of the step
        return (out - batch.flip(-1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def _fit(tmp_path, module, steps, ckpt_path=None):
    torch.manual_seed(0)
    photos = [torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                         plugins=[AtomicCheckpointIO()],
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "runs", every_n_train_steps=100,
                                                                 save_last=True),
                                    ExportCallback(dir=str(tmp_path), name="t", log_artifact=False, thumbnail_size=0),
                                    StopOnSignal()])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(photos, batch_size=2), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def heard(request):
    """The signal of the test with its usual handler: a background job (`pytest ... &` in a
    script) starts with SIGINT ignored, which StopOnSignal rightly leaves alone."""
    signum = request.param
    previous = signal.getsignal(signum)
    if previous == signal.SIG_IGN:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    yield signum
    signal.signal(signum, previous)


@pytest.mark.parametrize("heard", [signal.SIGINT, signal.SIGTERM], indirect=True)
def test_a_signal_saves_last_ckpt_at_the_end_of_the_step_and_the_run_resumes_exactly(tmp_path, heard):
    handler = signal.getsignal(heard)
    with pytest.raises(TrainingInterrupted) as err:
        _fit(tmp_path / "a", Counting(heard, at=3), 6)
    assert signal.getsignal(heard) == handler  # restored
    last = tmp_path / "a" / "runs" / "last.ckpt"
    assert f"step 3 of 6: {last} holds step 3" in str(err.value) and "ckpt_path=last" in str(err.value)
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert load_network(tmp_path / "a" / "t.safetensors")[1].model_card["steps"] == 3  # exported too
    resumed = _fit(tmp_path / "a", Counting(), 6, ckpt_path=str(last))
    straight = _fit(tmp_path / "b", Counting(), 6)
    assert resumed.global_step == straight.global_step == 6
    for (k, a), b in zip(resumed.lightning_module.net.state_dict().items(),
                         straight.lightning_module.net.state_dict().values()):
        assert torch.equal(a, b), k


def test_ctrl_c_or_sigterm_outside_training_is_one_line_and_leaves_no_partial_file(tmp_path, capsys):
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        pytest.skip("SIGTERM already has a handler in this process; run_cli keeps it")

    def killed_while_writing():
        def write(tmp):
            tmp.write_bytes(b"half a pict")
            os.kill(os.getpid(), signal.SIGTERM)  # a service manager stopping stylize.py
            tmp.write_bytes(b"half a picture")

        atomic_write(tmp_path / "out.png", write)

    with pytest.raises(SystemExit) as code:
        run_cli(killed_while_writing)
    assert code.value.code == 1 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip().startswith("error: stopped by Ctrl-C or SIGTERM")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


class _Handlers(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.tensor([signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                             signal.getsignal(signal.SIGTERM) == signal.SIG_IGN])


def test_loader_workers_leave_the_signals_to_the_training_process():
    from fast_nst.training.data.sampler import loader_kwargs

    loader = torch.utils.data.DataLoader(_Handlers(), batch_size=2, **loader_kwargs(1, persistent_workers=False))
    assert next(iter(loader)).all()


# ---------------------------------------------------------------- 7. the web page
@pytest.fixture
def studio(tmp_path, tiny_export):
    from fast_nst.app.studio import Studio

    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.safetensors").write_bytes(tiny_export.read_bytes())
    return Studio(models, device="cpu", output_dir=tmp_path / "page"), str(models / "tiny.safetensors")


def test_the_page_refuses_a_huge_upload_from_its_header(studio, tmp_path):
    """12000 x 12000 px in a 150 KB PNG: under PIL's own stop (179 Mpx), over max_pixels."""
    s, model = studio
    huge = tmp_path / "huge.png"
    Image.new("L", (12000, 12000)).save(huge, optimize=True)
    assert huge.stat().st_size < 1_000_000
    with pytest.raises(ImageTooLarge, match="12000x12000 px.*max_pixels"):
        s.stylize_photo(huge, model)
    assert not list((tmp_path / "page").iterdir())


def test_the_page_hands_uploads_to_its_own_checks_and_hides_its_folders(studio, tmp_path):
    pytest.importorskip("gradio")
    from gradio.data_classes import FileData

    from fast_nst.app.page import page_message, uploaded_image

    s, model = studio
    upload = tmp_path / "gradio" / "f3a9c0" / "notes.png"
    upload.parent.mkdir(parents=True)
    upload.write_text("meeting at noon")
    component = uploaded_image(type="filepath")
    assert component.preprocess(FileData(path=str(upload), orig_name="notes.png")) == str(upload)  # untouched
    with pytest.raises(Exception) as err:
        s.stylize_photo(str(upload), model)
    shown = page_message(str(err.value), hide=[tmp_path / "gradio"])
    assert shown.startswith("notes.png: not an image") and str(tmp_path) not in shown, shown
    assert not list((ROOT / "fast_nst").glob("*.pyi"))  # Gradio writes one beside a component subclass


def test_the_server_folder_is_removed_on_exit_and_after_a_crash(tmp_path, monkeypatch):
    from fast_nst.app.server import Workspace, remove_stale_workspaces
    from fast_nst.app.studio import Studio

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with pytest.raises(KeyboardInterrupt), Workspace() as work:
        assert Path(os.environ["GRADIO_TEMP_DIR"]).parent == work.path
        (work.path / "gradio" / "upload").mkdir(parents=True)
        (work.path / "gradio" / "upload" / "photo.jpg").write_bytes(b"x")
        os.kill(os.getpid(), signal.SIGTERM)  # how a service manager stops the page: the same shutdown
    assert not work.path.exists() and "GRADIO_TEMP_DIR" not in os.environ
    dead = tmp_path / "fast_nst_page_999999999_abc"  # a server killed outright (no such pid)
    dead.mkdir()
    mine = tmp_path / f"fast_nst_page_{os.getpid()}_abc"  # a server still running
    mine.mkdir()
    assert remove_stale_workspaces(tmp_path) == [dead] and mine.exists()
    models = tmp_path / "models"
    models.mkdir()
    export_network(_tiny_net(), models / "tiny.safetensors")
    s = Studio(models, device="cpu")  # no output_dir given: its own folder, gone with it
    out = s.output_dir
    assert out.is_dir()
    del s
    assert not out.exists()


# ---------------------------------------------------------------- 8. smaller things
def test_an_animated_gif_becomes_an_animated_png_of_every_frame(tiny_export, tmp_path):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) for _ in range(5)]
    gif = tmp_path / "in" / "anim.gif"
    gif.parent.mkdir()
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=[40, 80, 120, 160, 200], loop=0)
    assert _stylize(tiny_export, f"input={gif.parent}", f"output={tmp_path / 'out'}") == 0
    out = Image.open(tmp_path / "out" / "anim.png")
    assert out.n_frames == 5 and out.size == (40, 30)
    durations = []
    for i in range(5):
        out.seek(i)
        durations.append(out.info["duration"])
    assert durations == [40, 80, 120, 160, 200]
    assert _stylize(tiny_export, f"input={gif}", f"output={tmp_path / 'one.jpg'}") == 1  # JPEG holds one picture


def test_broken_and_looping_links_are_counted_and_named(tiny_export, photos, tmp_path, capsys):
    (photos / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (photos / "x.jpg").symlink_to("y.jpg")
    (photos / "y.jpg").symlink_to("x.jpg")
    (photos / "sub" / "up").symlink_to("..")  # a folder loop
    problems = []
    assert [p.name for p in list_images(photos, problems=problems)] == ["a.jpg", "b.png", "c.jpg"]
    assert len(problems) == 4
    assert _stylize(tiny_export, f"input={photos}", f"output={tmp_path / 'out'}") == 4  # the 3 photos are written
    err = capsys.readouterr().err
    assert "gone.jpg: a broken symbolic link" in err and "x.jpg: a symbolic link loop" in err
    assert "a link to a folder already searched" in err
    assert len(list((tmp_path / "out").rglob("*.*"))) == 3


def test_video_outputs_get_the_same_file_mode_as_images(tiny_export, tmp_path):
    old = os.umask(0o022)
    try:
        clip = _clip(tmp_path / "clip.mp4", n=3)
        stylize_video(clip, tmp_path / "v.mp4", lambda x: x, measure_flicker=False)
        save_image_atomic(Image.new("RGB", (4, 4)), tmp_path / "i.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "v.mp4").stat().st_mode) == stat.S_IMODE((tmp_path / "i.png").stat().st_mode) == 0o644


def test_a_full_disk_is_one_line_with_what_to_do(tiny_export, photos, tmp_path, monkeypatch, capsys):
    from fast_nst.stylize.command import run

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError) as err:
        atomic_write(tmp_path / "x.bin", full)
    assert "no space left" in str(err.value) and "Free some space" in str(err.value)
    assert not list(tmp_path.glob(".*"))
    monkeypatch.setattr(Image.Image, "save", lambda self, *a, **k: full(None))
    cfg = compose("stylize", [f"ckpt={tiny_export}", f"input={photos}", f"output={tmp_path / 'out'}", "device=cpu"])
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: run(cfg))
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code.value.code == 1 and len(err_lines) == 1 and "overwrite=false" in err_lines[0], err_lines


def test_a_non_ascii_file_name_gets_a_quoting_hint():
    problem = check_overrides(["ckpt=starry_night", "input=café.jpg"])
    assert problem.startswith("input=café.jpg: Hydra reads unquoted values in ASCII only")
    assert "'input=\"café.jpg\"'" in problem
    assert check_overrides(["input=photo.jpg", "--help", "'input=\"café.jpg\"'"[1:-1]]) is None
    r = run_script("stylize.py", "ckpt=starry_night", "input=Ångström/café.jpg")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error: input=Ångström/café.jpg") and "LexerNoViableAlt" not in r.stderr


def test_an_explicit_max_steps_wins_over_steps_per_style():
    from hydra.core.hydra_config import HydraConfig

    from fast_nst.training.module import run_paintings
    from fast_nst.training.run import apply_steps_per_style

    for overrides, steps in ((["trainer.max_steps=10"], 10), ([], 2400 * 4)):
        cfg = compose("train", ["experiment=multi_style", *overrides])
        HydraConfig.instance().set_config(cfg)
        apply_steps_per_style(cfg, run_paintings(cfg))
        assert cfg.trainer.max_steps == steps
    cfg = compose("train", ["experiment=multi_style", "trainer.max_steps=10", "steps_per_style=5"])
    with pytest.raises(ConfigError, match="give one"):
        apply_steps_per_style(cfg, run_paintings(cfg))


def test_the_divergence_guard_restarts_its_baseline_when_the_loss_becomes_another_sum():
    """A distillation run trains on its pixel target alone first (~1e4), then on the objective too
    (~1e6): a 100x step that is no divergence. The same jump with the same terms is one."""
    from types import SimpleNamespace

    from fast_nst.training.guards import DivergedError, DivergenceGuard

    def run(phases):
        guard = DivergenceGuard(factor=5, steps=10, min_output_std=0)
        trainer = SimpleNamespace(world_size=1, global_step=0, should_stop=False, checkpoint_callbacks=[],
                                  optimizers=[], precision="32")
        module = SimpleNamespace(last_terms={})
        for terms, value, n in phases:
            for _ in range(n):
                module.last_terms = dict.fromkeys(terms, 0.0)
                guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(value)}, None, 0)
                trainer.global_step += 1
        return trainer

    run([(("pixel", "loss"), 1e4, 50), (("content", "style", "tv", "pixel", "loss"), 1e6, 200)])
    with pytest.raises(DivergedError):
        run([(("content", "style", "tv", "loss"), 1e4, 50), (("content", "style", "tv", "loss"), 1e6, 200)])
