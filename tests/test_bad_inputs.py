"""Bad-input matrix: every bad input gets one line before any work, and nothing is touched.

Each case of :data:`CLI_CASES` runs ``consis ...`` in-process and asserts exit code 2,
exactly one line on stderr holding the expected fragment, and that the temporary
folder of the case (and the shared data set) is byte-for-byte as before: the
command refused before creating, replacing or deleting anything. :data:`CALL_CASES`
do the same for the readers, checkpoints, caches and file writers. The fault tests
kill a training run while it writes a checkpoint and a generator while it writes
images (SIGKILL), then check that nothing was lost and the next run leaves nothing
behind.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from consis_lib import checks
from consis_lib.atomic import atomic_path, atomic_write_text
from consis_lib.cli import main
from consis_lib.config import DataConfig
from consis_lib.errors import ConsisError, one_line
from consis_lib.outputs import LOCK, MARKER, claim_output_dir, output_lock, write_marker

TINY = DataConfig(profile="smoke", num_classes=2, train_per_class=4, val_per_class=2, seed=0)  # 8 training images
WORKERS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Shared:
    """Inputs made once per session: a tiny embedded set, a normal checkpoint, a sprite cache."""

    data: Path
    run: Path
    cache: Path


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory, wordnet: Any) -> Shared:
    from consis_lib.data.embedded import generate_embedded

    base = tmp_path_factory.mktemp("shared")
    os.environ["CONSIS_CACHE"] = str(base / "cache")
    data = generate_embedded(TINY, base / "data", base / "cache")
    run = base / "run"
    rc = main(["train", "--arch", "alexnet", "--profile", "smoke", "--data", str(data), "--out", str(run),
               "--epochs", "1", "--batch-size", "4", "--device", "cpu"])
    assert rc == 0
    return Shared(data=data, run=run, cache=base / "cache")


def snapshot(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``roots``: kind, size and SHA-256 (files) by path."""
    tree: dict[str, tuple[str, int, str]] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_symlink() or not p.is_file():
                tree[str(p)] = ("link" if p.is_symlink() else "dir", 0, "")
            else:
                tree[str(p)] = ("file", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return tree


# --------------------------------------------------------------------------- inputs


def _train(w: Path, s: Shared, *extra: str, out: str | None = None) -> list[str]:
    argv = ["train", "--arch", "alexnet", "--profile", "smoke", "--data", str(s.data),
            "--out", out or str(w / "out"), "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    return argv + list(extra)


def _file(path: Path, text: str = "a user's file") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _ckpt(w: Path, s: Shared, **changes: Any) -> str:
    """A copy of the shared normal checkpoint with some meta fields changed."""
    ckpt = torch.load(s.run / "model.pt", weights_only=True)
    ckpt.update(changes)
    path = w / "init" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(ckpt, path)
    return str(path)


def _other_classes(w: Path, s: Shared) -> str:
    """The same number of classes, one of them another WNID (as sorted folder names)."""
    wnids = torch.load(s.run / "model.pt", weights_only=True)["wnids"]
    return _ckpt(w, s, wnids=sorted(wnids[1:] + ["n02958343"]))


def _foreign_output(w: Path, s: Shared) -> str:
    out = claim_output_dir(w / "out", "train", "test", expected=("model.pt",))
    _file(out / "notes.txt")
    return str(out)


def _locked(w: Path, s: Shared) -> str:
    out = claim_output_dir(w / "out", "train", "test")
    (out / LOCK).write_text(f'{{"pid": {os.getpid()}, "host": "{os.uname().nodename}", "what": "consis train"}}')
    return str(out)


def _marked(w: Path, kind: str) -> str:
    out = w / "out"
    out.mkdir()
    write_marker(out, kind, "test")
    return str(out)


def _data_mismatch(w: Path, s: Shared) -> str:
    for split, wnid in (("train", "n02084071"), ("val", "n02121620")):
        (w / "d" / split / wnid).mkdir(parents=True)
    return str(w / "d")


CliCase = tuple[str, Callable[[Path, Shared], list[str]], str]
CLI_CASES: list[CliCase] = [
    ("batch-size-0", lambda w, s: _train(w, s, "--batch-size", "0"), "--batch-size 0 is not a positive integer"),
    ("batch-size-neg", lambda w, s: _train(w, s, "--batch-size", "-5"), "--batch-size -5 is not a positive"),
    ("batch-size-text", lambda w, s: _train(w, s, "--batch-size", "x"), "invalid int value"),
    ("batch-too-big", lambda w, s: _train(w, s, "--batch-size", "64"), "smaller than one batch of 64"),
    ("lr-neg", lambda w, s: _train(w, s, "--lr", "-0.1"), "--lr -0.1 is out of range"),
    ("lr-zero", lambda w, s: _train(w, s, "--lr", "0"), "--lr 0.0 is out of range"),
    ("lr-nan", lambda w, s: _train(w, s, "--lr", "nan"), "--lr nan is not a finite number"),
    ("lr-inf", lambda w, s: _train(w, s, "--lr", "inf"), "--lr inf is not a finite number"),
    ("adv-lr-neg", lambda w, s: _train(w, s, "--adv-lr", "-1"), "--adv-lr -1.0 is out of range"),
    ("workers-neg", lambda w, s: _train(w, s, "--num-workers", "-1"), "--num-workers -1 is negative"),
    ("epochs-neg", lambda w, s: _train(w, s, "--epochs", "-3"), "--epochs -3 is negative"),
    ("adv-epochs-neg", lambda w, s: _train(w, s, "--adv-epochs", "-1"), "--adv-epochs -1 is negative"),
    ("seed-neg", lambda w, s: _train(w, s, "--seed", "-1"), "--seed -1 is negative"),
    ("eps-nan", lambda w, s: _train(w, s, "--eps", "nan"), "--eps nan is not a finite number"),
    ("eps-zero", lambda w, s: _train(w, s, "--eps", "0"), "--eps 0.0 is out of range: pass a number in (0, 1]"),
    ("eps-two", lambda w, s: _train(w, s, "--eps", "2"), "--eps 2.0 is out of range"),
    ("eps-neg-inf", lambda w, s: _train(w, s, "--eps=-inf"), "--eps -inf is not a finite"),
    ("alpha-big", lambda w, s: _train(w, s, "--alpha", "1.5"), "--alpha 1.5 is out of range: pass a number in [0, 1]"),
    ("alpha-nan", lambda w, s: _train(w, s, "--alpha", "nan"), "--alpha nan is not a finite"),
    ("beta-neg", lambda w, s: _train(w, s, "--beta", "-1"), "--beta -1.0 is out of range: pass a number >= 0"),
    ("device-word", lambda w, s: _train(w, s, "--device", "gpu"), "--device 'gpu' is not a device"),
    ("device-xla", lambda w, s: _train(w, s, "--device", "xla"), "--device xla is not supported"),
    ("arch-unknown", lambda w, s: _train(w, s, "--arch", "lenet"), "invalid choice: 'lenet'"),
    ("profile-unknown", lambda w, s: _train(w, s, "--profile", "huge"), "invalid choice: 'huge'"),
    ("no-out", lambda w, s: ["train", "--arch", "alexnet"], "the following arguments are required: --out"),
    ("out-is-file", lambda w, s: _train(w, s, out=str(_file(w / "f.txt"))), "is a file, not a folder"),
    ("out-under-file", lambda w, s: _train(w, s, out=str(_file(w / "f.txt") / "sub" / "out")), "lies under the file"),
    ("out-unwritable", lambda w, s: _train(w, s, out="/proc/consis-test/out"), "cannot"),
    ("out-user-folder", lambda w, s: (_file(w / "out" / "thesis.tex"), _train(w, s))[1], "is not empty but was not written by consis"),
    ("out-user-model", lambda w, s: (_file(w / "out" / "model.pt"), _train(w, s))[1], "holds model.pt but was not written by consis"),
    ("out-user-log", lambda w, s: (_file(w / "out" / "log.jsonl"), _train(w, s))[1], "was not written by consis"),
    ("out-other-kind", lambda w, s: _train(w, s, out=_marked(w, "embedded")), "holds a consis embedded output, not train"),
    ("out-user-file-in-run", lambda w, s: _train(w, s, out=_foreign_output(w, s)), "notes.txt was not written by consis"),
    ("out-damaged-marker", lambda w, s: (_file(w / "out" / MARKER, "{"), _train(w, s))[1], "is damaged"),
    ("out-locked", lambda w, s: _train(w, s, out=_locked(w, s)), "is in use by another run"),
    ("data-missing", lambda w, s: _train(w, s, "--data", str(w / "nope")), "no train/ folder"),
    ("data-mismatch", lambda w, s: _train(w, s, "--data", _data_mismatch(w, s)), "hold different class folders"),
    ("init-missing", lambda w, s: _train(w, s, "--init", str(w / "nothing.pt")), "no checkpoint at"),
    ("init-corrupt", lambda w, s: _train(w, s, "--init", str(_file(w / "bad.pt", "not a checkpoint"))), "not a readable consis checkpoint"),
    ("init-not-consis", lambda w, s: (torch.save({"w": torch.zeros(1)}, w / "x.pt"), _train(w, s, "--init", str(w / "x.pt")))[1], "is not a consis checkpoint"),
    ("init-other-arch", lambda w, s: _train(w, s, "--init", _ckpt(w, s, arch="resnet18")), "holds arch resnet18, not alexnet"),
    ("init-adversarial", lambda w, s: _train(w, s, "--init", _ckpt(w, s, adv=True)), "is an adversarial (Eq. 6) model"),
    ("init-adversarial-for-adv", lambda w, s: _train(w, s, "--adv", "--init", _ckpt(w, s, adv=True)), "--init wants the normal model"),
    ("init-other-classes", lambda w, s: _train(w, s, "--init", _other_classes(w, s)), "trained on other classes"),
    ("init-other-count", lambda w, s: _train(w, s, "--init", _ckpt(w, s, num_classes=3)), "trained for 3 classes, the data has 2"),
    ("init-other-size", lambda w, s: _train(w, s, "--init", _ckpt(w, s, image_size=64)), "trained on 64 px images"),
    ("init-other-scale", lambda w, s: _train(w, s, "--init", _ckpt(w, s, scale="paper")), "is a paper-scale model"),
    ("adv-without-init", lambda w, s: _train(w, s, "--adv"), "needs the normal model"),
    ("embedded-user-set", lambda w, s: ["data", "embedded", "--out", str(_file(w / "mine" / "classes.json").parent)], "holds classes.json but was not written by consis"),
    ("embedded-user-file-in-output", lambda w, s: ["data", "embedded", "--out", (_marked(w, "embedded"), str(_file(w / "out" / "keep.txt").parent))[1]], "keep.txt was not written by consis"),
    ("embedded-probe-output", lambda w, s: ["data", "embedded", "--out", _marked(w, "probe")], "holds a consis probe output, not embedded"),
    ("embedded-out-file", lambda w, s: ["data", "embedded", "--out", str(_file(w / "f"))], "is a file, not a folder"),
    ("embedded-under-file", lambda w, s: ["data", "embedded", "--out", str(_file(w / "f") / "x")], "lies under the file"),
    ("embedded-seed-neg", lambda w, s: ["data", "embedded", "--out", str(w / "o"), "--seed", "-1"], "--seed -1 is negative"),
    ("embedded-paper", lambda w, s: ["data", "embedded", "--profile", "paper", "--out", str(w / "o")], "invalid choice: 'paper'"),
    ("embedded-cache-file", lambda w, s: ["data", "embedded", "--out", str(w / "o"), "--cache", str(_file(w / "c"))], "is a file, not a folder"),
    ("probe-broden-folder", lambda w, s: ["data", "probe", "--out", str(_file(w / "broden" / "index.csv").parent)], "holds index.csv but was not written by consis"),
    ("probe-under-file", lambda w, s: ["data", "probe", "--out", str(_file(w / "f") / "p")], "lies under the file"),
    ("probe-embedded-output", lambda w, s: ["data", "probe", "--out", _marked(w, "embedded")], "holds a consis embedded output, not probe"),
    ("sheet-txt", lambda w, s: ["data", "sheet", "--out", str(w / "x.txt")], "unknown image format '.txt'"),
    ("sheet-user-png", lambda w, s: ["data", "sheet", "--out", str(_file(w / "photo.png"))], "photo.png exists and was not written by consis"),
    ("sheet-folder", lambda w, s: ["data", "sheet", "--out", str((w / "d.png").mkdir() or w / "d.png")], "is a folder"),
    ("unknown-command", lambda w, s: ["dance"], "invalid choice: 'dance'"),
]


@pytest.mark.parametrize("name,build,fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_gets_one_line_and_touches_nothing(name, build, fragment, shared, tmp_path, capsys):
    argv = build(tmp_path, shared)
    before = snapshot(tmp_path, shared.data, shared.run)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert snapshot(tmp_path, shared.data, shared.run) == before


# --------------------------------------------------------------------------- readers, checkpoints, caches


def _image_folder(w: Path, make: Callable[[Path], None]) -> Callable[[], Any]:
    """A one-class ImageNet folder whose single image ``make`` writes; reading it is the call."""
    from consis_lib.data.imagefolder import WnidImageFolder

    folder = w / "imgs" / "train" / "n02084071"
    folder.mkdir(parents=True)
    make(folder)
    return lambda: WnidImageFolder(w / "imgs", "train")[0]


def _folder_call(w: Path, split: str) -> Callable[[], Any]:
    from consis_lib.data.imagefolder import WnidImageFolder

    return lambda: WnidImageFolder(w / "imgs", split)


def _broden_root_call(root: Path) -> Callable[[], Any]:
    from consis_lib.data.broden import Broden

    return lambda: Broden(root)


def _bomb(folder: Path) -> None:
    Image.new("RGB", (64, 64)).save(folder / "big.png")


def _loader_with_corrupt_image(w: Path) -> Callable[[], Any]:
    from consis_lib.data.imagefolder import WnidImageFolder

    folder = w / "imgs" / "train" / "n02084071"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = WnidImageFolder(w / "imgs", "train")
    return lambda: list(torch.utils.data.DataLoader(ds, num_workers=1))


def _broden(w: Path, label_category: str = "color(1)", mask_size: int = 4) -> Path:
    from consis_lib.data.broden import CATEGORIES
    from consis_lib.data.broden_write import encode_label_png

    root = w / "broden"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "a.jpg")
    encode_label_png(np.ones((mask_size, mask_size), np.int64)).save(root / "images" / "a_color.png")
    cells = {c: "" for c in CATEGORIES} | {"color": "a_color.png"}
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw," + ",".join(CATEGORIES) + "\n"
        + "a.jpg,train,8,8,4,4," + ",".join(cells[c] for c in CATEGORIES) + "\n"
    )
    (root / "category.csv").write_text("name,first,last,count,frequency\ncolor,1,1,1,1\n")
    (root / "label.csv").write_text(f'number,name,category,frequency,coverage,syns\n1,red-c,"{label_category}",1,1,\n')
    return root


def _broden_call(**kw: Any) -> Callable[[Path], Callable[[], Any]]:
    def build(w: Path) -> Callable[[], Any]:
        from consis_lib.data.broden import Broden

        root = _broden(w, **kw)
        return lambda: Broden(root)[0]

    return build


def _write_failing(exc: BaseException) -> Callable[[Path], Callable[[], Any]]:
    def build(w: Path) -> Callable[[], Any]:
        (w / "out").mkdir()

        def call() -> None:
            with atomic_path(w / "out" / "model.pt"):
                raise exc

        return call

    return build


def _lock_twice(w: Path) -> Callable[[], Any]:
    def call() -> None:
        with output_lock(w), output_lock(w):
            pass

    return call


CallCase = tuple[str, Callable[[Path], Callable[[], Any]], str]
CALL_CASES: list[CallCase] = [
    ("imagefolder-missing-split", lambda w: _folder_call(w, "val"), "--out NEW_DIR"),
    ("imagefolder-not-wnid", lambda w: (_file(w / "imgs" / "train" / "dogs" / "a.png"), _folder_call(w, "train"))[1], "is not a WordNet ID"),
    ("imagefolder-dangling-link", lambda w: _image_folder(w, lambda f: (f / "a.png").symlink_to(f / "gone.png")), "symbolic link"),
    ("imagefolder-corrupt", lambda w: _image_folder(w, lambda f: (f / "a.png").write_bytes(b"\x89PNG broken")), "cannot read image"),
    ("imagefolder-float-tiff", lambda w: _image_folder(w, lambda f: Image.new("F", (4, 4)).save(f / "a.png", format="TIFF")), "32-bit"),
    ("imagefolder-worker-corrupt", _loader_with_corrupt_image, "cannot read image"),
    ("imagefolder-bad-classes-json", lambda w: _image_folder(w, lambda f: (Image.new("RGB", (4, 4)).save(f / "a.png"), _file(w / "imgs" / "classes.json", "{"))), "is not valid JSON"),
    ("broden-unknown-category", _broden_call(label_category="colour(1)"), "unknown category 'colour'"),
    ("broden-mask-wrong-size", _broden_call(mask_size=6), "masks are never stretched"),
    ("broden-no-index", lambda w: ((w / "b").mkdir(), _broden_root_call(w / "b"))[1], "index.csv is missing"),
    ("write-disk-full", _write_failing(OSError(errno.ENOSPC, "No space left on device")), "the disk is full"),
    ("write-read-only", _write_failing(OSError(errno.EROFS, "Read-only file system")), "read-only"),
    ("write-torch-save", _write_failing(RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/3: file write failed")), "torch.save could not write"),
    ("lock-twice", _lock_twice, "is in use by another run"),
    ("check-cuda", lambda w: (lambda: checks.device_present("cuda:99")), "--device cuda:99"),
    ("check-free-space", lambda w: (lambda: checks.free_space(w, 2**62, "a checkpoint")), "needs about"),
]


@pytest.mark.parametrize("name,build,fragment", CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_library_bad_input_gets_one_line_and_touches_nothing(name, build, fragment, tmp_path, wordnet):
    call = build(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ConsisError) as info:
        call()
    msg = one_line(info.value)
    assert fragment in msg
    assert "\n" not in msg and (info.value.__class__ is ConsisError)
    assert snapshot(tmp_path) == before


def test_decompression_bomb_is_refused_naming_the_file(tmp_path, wordnet, monkeypatch):
    call = _image_folder(tmp_path, _bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2 * 100: PIL's hard limit
    with pytest.raises(ConsisError, match=r"big\.png is too large to decode safely"):
        call()


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    from consis_lib.data.imagefolder import load_image

    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # -> 0, 1, 128, 255
    Image.fromarray(values).save(tmp_path / "a.png")
    rgb = np.asarray(load_image(tmp_path / "a.png"))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_atomic_writes_honour_the_umask_and_clean_temps_of_dead_runs(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".r.json.consis-tmp-{int(dead.stdout)}-abcd.json"
    stale.write_text("half")
    mine_alive = _file(tmp_path / f".r.json.consis-tmp-{os.getpid()}-beef.json", "in progress")
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640
    assert not stale.exists() and mine_alive.exists()


def test_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK).write_text(f'{{"pid": {int(dead.stdout)}, "host": "{os.uname().nodename}"}}')
    with output_lock(tmp_path) as lock:
        assert f'"pid": {os.getpid()}' in lock.read_text()
    assert not (tmp_path / LOCK).exists()


def test_ctrl_c_exits_quietly_with_the_resume_hint(shared, tmp_path, capsys, monkeypatch):
    import consis_lib.train_cli as tc

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tc, "fit", interrupted)
    assert main(_train(tmp_path, shared)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["consis: interrupted; rerun the same command with --resume to continue from the last saved epoch"]
    assert not (tmp_path / "out" / LOCK).exists()  # the lock is released


def test_rerun_into_own_output_is_accepted_and_marked(shared, tmp_path):
    out = tmp_path / "out"
    assert main(_train(tmp_path, shared)) == 0
    assert main(_train(tmp_path, shared)) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [MARKER, "log.jsonl", "model.pt"]
    marker = (out / MARKER).read_text()
    assert '"kind": "train"' in marker and '"model.pt"' in marker


# --------------------------------------------------------------------------- faults (SIGKILL)


def _run_until(code: str, line: str, timeout: float = 120.0) -> subprocess.Popen:
    """Start ``python -c code``; return once it printed ``line`` (it then sleeps)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=WORKERS_ENV)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for out in proc.stdout:
        if out.strip() == line:
            return proc
        assert time.monotonic() < deadline, "the run did not reach the fault point"
    raise AssertionError(f"the run ended before {line!r} (exit {proc.wait()})")


def test_kill_mid_checkpoint_loses_nothing_and_next_run_cleans_up(shared, tmp_path):
    out = tmp_path / "out"
    argv = _train(tmp_path, shared, "--epochs", "2")
    code = (
        "import time, torch\n"
        "real = torch.save\n"
        "calls = []\n"
        "def slow(obj, f, *a, **k):\n"
        "    real(obj, f, *a, **k)\n"
        "    calls.append(f)\n"
        "    if len(calls) == 2:\n"
        "        print('SAVING', flush=True); time.sleep(600)\n"
        "torch.save = slow\n"
        "from consis_lib.cli import main\n"
        f"main({argv!r})\n"
    )
    proc = _run_until(code, "SAVING")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in out.iterdir())
    assert LOCK in left and any(".consis-tmp-" in n for n in left)  # what a killed run leaves
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 1  # epoch 1 is intact
    assert main(_train(tmp_path, shared, "--epochs", "2", "--resume")) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "log.jsonl", "model.pt"]
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 2


def test_kill_mid_generation_keeps_the_earlier_set_and_next_run_cleans_up(shared, tmp_path):
    from consis_lib.data.embedded import generate_embedded
    from consis_lib.outputs import verify_manifest

    out = tmp_path / "emb"
    shutil.copytree(shared.data, out)  # an earlier generated set
    first = snapshot(out)
    cfg = dataclasses.replace(TINY, train_per_class=12)
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from consis_lib.config import DataConfig\n"
        "from consis_lib.data import embedded\n"
        "real = embedded.save_png\n"
        "n = []\n"
        "def slow(a, p):\n"
        "    real(a, p); n.append(p)\n"
        "    if len(n) == 10:\n"
        "        print('WRITING', flush=True); time.sleep(600)\n"
        "embedded.save_png = slow\n"
        f"embedded.generate_embedded({cfg!r}, Path({str(out)!r}), Path({str(shared.cache)!r}))\n"
    )
    proc = _run_until(code, "WRITING")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(out) == first  # the earlier set is untouched
    assert any(".consis-tmp-" in p.name for p in tmp_path.iterdir())
    generate_embedded(cfg, out, shared.cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]  # the killed run's folder is gone
    assert verify_manifest(out, deep=True) is None
    assert len(list(out.glob("train/*/*.png"))) == 2 * 12
