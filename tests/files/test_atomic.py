"""Tests genreg/files/atomic.py, crash safety: SIGKILL at any moment leaves the last good file, a failed
write never replaces a good file with half of one (also when the disk fills during a run: exit code 2,
not a traceback), and the temporary files of dead writers are cleared.

The kill tests fork this process rather than start new interpreters (each would import torch for
seconds); the child only writes files, with one thread, as PyTorch's own forked DataLoader workers do.
"""

from __future__ import annotations

import copy
import errno
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import SafetensorError
from safetensors.torch import save_file

import genreg
from genreg.cli import cli
from genreg.errors import GenregError, OutputError
from genreg.files import tensors
from genreg.files.atomic import atomic_write, check_writable, process_alive
from genreg.files.model_files import load_checkpoint, save_checkpoint, save_model
from tests.helpers import EXAMPLES, SMALL_RUN

INFO = genreg.DataInfo((1, 28, 28), 10)


MARKERS = (1, 2, 3, 4)


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and POSIX signals")


def marked(model: genreg.GenerativeModel, marker: int) -> tuple[genreg.GenerativeModel, torch.optim.Optimizer]:
    """A copy of ``model`` whose every weight, Adam moment and step count equals ``marker``."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters())
    model.loss(torch.rand(2, *INFO.image_shape))[0].backward()
    optimizer.step()
    with torch.no_grad():
        for tensor in [*model.state_dict().values(), *(t for s in optimizer.state.values() for t in s.values())]:
            tensor.fill_(marker)
    return model, optimizer


@pytest.fixture(scope="module")
def pairs() -> list[tuple[genreg.GenerativeModel, torch.optim.Optimizer, int]]:
    """Four states of a model of 0.8 M weights (a checkpoint of about 10 MB: a write takes tens of ms)."""
    torch.manual_seed(0)
    parts = {"encoder": {"type": "mlp", "hidden": [512]}, "decoder": {"type": "mlp", "hidden": [512]}}
    model = genreg.build_model({"type": "vae", "latent_dim": 2, **parts}, INFO)
    return [(*marked(model, marker), marker) for marker in MARKERS]


def write_forever(folder: Path, pairs: list, start: int) -> None:
    """The child: replace the checkpoint and the model file with the next state, again and again."""
    torch.set_num_threads(1)
    for k in itertools.count(start):
        model, optimizer, marker = pairs[k % len(pairs)]
        save_checkpoint(folder / "checkpoint.safetensors", model, optimizer, marker, spec=None)
        save_model(model, folder / "model.safetensors")


def uniform_marker(tensors: list[torch.Tensor]) -> float:
    """The one value every element of every tensor holds; fails on a mix of two states."""
    values = torch.cat([t.detach().flatten().float() for t in tensors])
    low, high = float(values.min()), float(values.max())
    assert low == high, f"a mix of states: values from {low} to {high}"
    return low


@pytest.mark.slow
def test_sigkill_during_writes_always_leaves_a_whole_loadable_file(tmp_path, pairs):
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(folder / "checkpoint.safetensors", pairs[0][0], pairs[0][1], MARKERS[0], spec=None)
    save_model(pairs[0][0], folder / "model.safetensors")
    fresh_model, fresh_optimizer, _ = copy.deepcopy(pairs[0])
    rng = random.Random(0)
    leftovers = 0
    for kill in range(20):
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                write_forever(folder, pairs, start=kill)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.1))  # a checkpoint and a model file take about 65 ms
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"the writer died by itself: {status}"

        names = {path.name for path in folder.iterdir()}
        assert {n for n in names if not n.startswith(".")} == {"checkpoint.safetensors", "model.safetensors"}
        temporary = names - {"checkpoint.safetensors", "model.safetensors"}
        leftovers += len(temporary)

        epoch = load_checkpoint(folder / "checkpoint.safetensors", fresh_model, fresh_optimizer)
        assert epoch in MARKERS
        assert uniform_marker(list(fresh_model.state_dict().values())) == epoch  # weights of the same save
        moments = [t for s in fresh_optimizer.state_dict()["state"].values() for t in s.values()]
        assert uniform_marker(moments) == epoch  # and the optimiser state too
        assert uniform_marker(list(genreg.load_model(folder).state_dict().values())) in MARKERS
        for name in temporary:  # a leftover is never read as the file; remove it to keep the disk tidy
            (folder / name).unlink()
    assert leftovers > 0, "no kill landed in the middle of a write: the test proved nothing"


# --------------------------------------------------------------------------- failed writes


def half_then_fail(error: Exception):
    """A ``save_file`` that writes half a file, then fails as a full disk does."""

    def write(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:
            fh.truncate(os.path.getsize(filename) // 2)
        raise error

    return write


FULL = {
    "OSError": (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
    "SafetensorError": (  # what safetensors itself raises when the disk fills up
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        "Error while serializing: I/O error: No space left on device (os error 28)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("raised", list(FULL))
@pytest.mark.parametrize("writer", ["save_model", "save_checkpoint"])
def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch, pairs, raised, writer):
    (old, old_optimizer, _), (new, new_optimizer, _) = pairs[0], pairs[1]
    path = tmp_path / "file.safetensors"

    def save(model, optimizer):
        if writer == "save_model":
            save_model(model, path)
        else:
            save_checkpoint(path, model, optimizer, 1, spec=None)

    save(old, old_optimizer)
    before = path.read_bytes()
    error, reason = FULL[raised]
    monkeypatch.setattr(tensors, "save_file", half_then_fail(error))
    with pytest.raises(OutputError) as caught:
        save(new, new_optimizer)
    assert str(caught.value) == f"could not write {path} ({reason}); its previous contents are unchanged."
    assert isinstance(caught.value, GenregError) and isinstance(caught.value, OSError)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["file.safetensors"]  # the half-written temporary file is gone


def test_a_failed_first_write_leaves_no_file(tmp_path):
    written = []

    def half(tmp: Path) -> None:
        written.append(tmp)
        tmp.write_text('{"half": ')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=r"\(No space left on device\); no partial file was left\.$"):
        atomic_write(tmp_path / "spec.json", half)
    assert os.listdir(tmp_path) == []
    # hidden, so never taken for the file, and with its suffix, for writers that pick a format by it
    assert written[0].parent == tmp_path and written[0].name.startswith(".spec.json.") and written[0].suffix == ".json"


@pytest.mark.slow
def test_a_real_write_failure_from_the_kernel_keeps_the_previous_file(tmp_path, pairs):
    """RLIMIT_FSIZE makes the kernel refuse to grow any file past 64 kB (EFBIG), in a forked child."""
    path = tmp_path / "model.safetensors"
    save_model(pairs[0][0], path)
    before = path.read_bytes()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            torch.set_num_threads(1)
            try:
                save_model(pairs[1][0], path)
                message = "no error"
            except OutputError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    assert message.startswith(f"could not write {path} (") and "File too large" in message, message
    assert message.endswith("; its previous contents are unchanged.")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.safetensors"]


def test_a_disk_that_fills_during_a_run_is_exit_code_2_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(tensors, "save_file", half_then_fail(FULL["OSError"][0]))
    spec = EXAMPLES / "vae.json"
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", str(spec), "--out", str(out), "--set", "train.epochs=1", "--quiet", *SMALL_RUN]
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.stderr == (
        f"Error: could not write {out / 'checkpoint.safetensors'} (No space left on device); "
        "no partial file was left.\n"
    )
    assert sorted(os.listdir(out)) == ["spec.json"]
    assert json.loads((out / "spec.json").read_text())["train"]["epochs"] == 1


@pytest.mark.slow
def test_temporary_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL mid-write leaves a hidden temporary file; the next write of that file clears it."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that no longer exists
    orphan = tmp_path / f".spec.json.{child.pid}.tmp.json"
    orphan.write_text('{"half": ')
    alive = tmp_path / f".spec.json.{os.getppid()}.tmp.json"  # a running process: maybe still writing
    alive.write_text("{}")
    atomic_write(tmp_path / "spec.json", lambda tmp: tmp.write_text("{}"))
    assert not orphan.exists() and alive.exists()
    assert (tmp_path / "spec.json").read_text() == "{}"


# --------------------------------------------------------------------------- read-only file systems (issue 15, case 14)


def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_a_cleanup_that_fails_too_does_not_hide_why_the_write_failed(tmp_path, monkeypatch):
    """On a read-only file system removing the temporary file fails as well; the error names the write's cause."""

    def write(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "unlink", _read_only)
    with pytest.raises(OutputError, match=r"could not write .*out\.json \(No space left on device\)"):
        atomic_write(tmp_path / "out.json", write)


def test_check_writable_names_the_option_the_path_and_the_cause(tmp_path, monkeypatch):
    assert check_writable(tmp_path / "new.png", "-o") == tmp_path / "new.png"
    with pytest.raises(OutputError, match=r"^-o .*nowhere/x\.png: the folder .*nowhere does not exist"):
        check_writable(tmp_path / "nowhere" / "x.png", "-o")
    with pytest.raises(OutputError, match=r"^-o .*: a folder; give the name of a file to write\.$"):
        check_writable(tmp_path, "-o")
    with pytest.raises(OutputError, match=r"^-o .*: a file name of 5,004 bytes; this file system allows 255\.$"):
        check_writable(tmp_path / ("x" * 5000 + ".png"), "-o")
    with pytest.raises(OutputError, match=r"^-o .*: cannot write in .* \(File name too long\); choose another"):
        check_writable(tmp_path / ("x" * 5000) / "y.png", "-o")
    monkeypatch.setattr(tempfile, "TemporaryFile", _read_only)
    with pytest.raises(OutputError, match=r"^-o .*x\.png: cannot write in .* \(Read-only file system\); choose"):
        check_writable(tmp_path / "x.png", "-o")


def test_pictures_and_eval_refuse_a_read_only_folder_before_any_work(tmp_path, monkeypatch):
    """`sample -o RO/x.png` and `eval` on a model in a read-only folder: exit 2 naming the cause, no work done."""
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo((1, 4, 4), 2))
    path = save_model(model, tmp_path / "model.safetensors")
    monkeypatch.setattr(genreg.files.model_files, "load_model", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr(genreg.data.loading, "recorded_data", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr(tempfile, "TemporaryFile", _read_only)
    for args in (["sample", path, "-o", tmp_path / "x.png"], ["eval", path]):
        result = CliRunner().invoke(cli, list(map(str, args)))
        assert result.exit_code == 2, (args, result.output)
        assert "(Read-only file system); choose another place." in result.stderr
        assert "Traceback" not in result.output


@pytest.mark.parametrize("pid", [99999999999999999999, 2**31, 0, -1, True, "12"])
def test_an_id_no_process_can_have_is_of_no_process(pid: object) -> None:
    """process_alive(99999999999999999999) raised OverflowError; process_alive(-1) signalled every process
    (os.kill(-1, 0)) and answered True."""
    assert process_alive(pid) is False  # type: ignore[arg-type]
    assert process_alive(os.getpid()) is True
