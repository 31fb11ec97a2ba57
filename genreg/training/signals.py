"""SIGINT and SIGTERM, from the moment ``genreg run`` or ``genreg sweep`` starts until it ends.

Each phase of a run handles them its own way, so that every exit by a signal says what was kept:

- :func:`raised` (before and after training: imports, data loading, building): the signal raises
  :class:`Stopped` at once; the runner then says what the folder holds (:func:`stopped`).
- :func:`stop_requests` (training): the step under way finishes, the last checkpoint is kept; a signal after
  the last step acts once the run's final files are written (:meth:`StopRequest.act`).
- :func:`deferred` (the final writes: model file, pictures): the writes finish, then the signal acts.

This module imports only the standard library at the top, so the CLI can install :func:`raised`
before it imports torch.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genreg.errors import TrainingInterruptedError

if TYPE_CHECKING:
    from genreg.training.distributed import World

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):  # noqa: N818 - a signal, not an error; a BaseException, as KeyboardInterrupt is
    """Raised by :func:`raised`'s handler: a signal that ends the process where it is.

    ``except Exception`` (in data loading, say) does not catch it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Set by a signal handler; read by the training loop between steps."""

    signum: int | None = None
    AGREE_EVERY = 20  # steps; ranks must stop at the same step, so with several they agree only this often

    def agreed(self, step: int, world: World) -> int:
        """The signal to stop for (0: none); with several ranks, any rank's signal stops all of them together."""
        if not world.distributed:
            return self.signum or 0
        if step % self.AGREE_EVERY:
            return 0
        import torch

        from genreg.training import distributed

        return int(distributed.max_over_ranks(torch.tensor([self.signum or 0]))[0])

    def act(self) -> None:
        """A signal no step saw (it came while the last epoch was measured or checkpointed) acts now, after the
        run's final writes, as it would have outside training (the runner's: :func:`stopped`)."""
        if self.signum:
            signal.raise_signal(self.signum)


@contextlib.contextmanager
def _handling(handle: Callable[[int], None]) -> Iterator[None]:
    """While the body runs, SIGINT and SIGTERM call ``handle(signum)`` once; the handlers in place before are
    restored at the first signal (a second one acts as it did before) and at the end. Outside the main thread,
    where Python cannot handle signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    def handler(signum: int, frame: Any) -> None:
        restore()
        handle(signum)

    handler.raises_stopped = handle is _stop  # type: ignore[attr-defined]

    for signum in SIGNALS:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        restore()


def raised() -> contextlib.AbstractContextManager[None]:
    """While the body runs, SIGINT and SIGTERM raise :class:`Stopped` wherever the process is; within another
    :func:`raised` (the CLI's, then the runner's) nothing changes, so a second signal acts as before the first."""
    if getattr(signal.getsignal(signal.SIGTERM), "raises_stopped", False):
        return contextlib.nullcontext()
    return _handling(_stop)


def _stop(signum: int) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training, SIGINT and SIGTERM ask the loop to stop after the current step.

    The first signal only sets the request (the step, and a checkpoint being
    written, finish); a second one acts as it did before the loop.
    """
    request = StopRequest()

    def ask(signum: int) -> None:
        request.signum = signum

    with _handling(ask):
        yield request


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the body (files being written) has run, then act as they did before."""
    caught: list[int] = []
    with _handling(caught.append):
        yield
    if caught:
        signal.raise_signal(caught[0])


def interrupted(signum: int, epoch: int, folder: Path | None) -> TrainingInterruptedError:
    """The error that ends a run stopped by a signal during ``epoch`` (0-based), saying what was kept."""
    from genreg.files.run_folder import RunFolder

    name = signal.Signals(signum).name
    if folder is None:
        kept = "nothing was saved (no run folder)"
    else:
        kept = (
            f"{RunFolder(folder).checkpoint_path} holds the state after epoch {epoch}; continue with "
            f"`{resume_command(folder)}` (epoch {epoch + 1} is trained again from its start, "
            "to the same weights as a run that was never stopped)"
        )
    return TrainingInterruptedError(f"training stopped by {name} during epoch {epoch + 1}; {kept}.", signum)


def resume_command(folder: Path) -> str:
    """The command that continues the run in ``folder``: its own ``spec.json`` (the resolved spec it started
    with) resumed there."""
    from genreg.files.run_folder import RunFolder

    run = RunFolder(folder)
    return f"genreg run {shlex.quote(str(run.spec_path))} --out {shlex.quote(str(run.path))} --resume"


def stopped(signum: int, folder: Path | None) -> TrainingInterruptedError:
    """The error that ends a run stopped by a signal outside its epochs, saying what ``folder`` holds (None: this
    process has written nothing there, or put back what it replaced)."""
    from genreg.files.run_folder import RunFolder

    name = signal.Signals(signum).name
    run = RunFolder(folder) if folder is not None else None
    present = run.present() if run is not None and run.path.is_dir() else []
    if run is None or not present:
        kept = f"stopped by {name} before training started; nothing was kept: rerun the same command"
    elif present == [RunFolder.SPEC]:
        kept = (
            f"stopped by {name} before training started; {run.path} holds only {RunFolder.SPEC}: rerun the same "
            "command (with or without --resume, training starts from epoch 1)"
        )
    elif RunFolder.MODEL not in present:
        kept = (
            f"stopped by {name} before training ended; {run.checkpoint_path} holds the last finished epoch: "
            f"continue with `{resume_command(run.path)}`"
        )
    elif run.missing_pictures():
        commands = {RunFolder.SAMPLES: "sample", RunFolder.LATENT: "latent"}
        draw = " and ".join(
            f"`genreg {commands[picture]} {run.model_path} -o {run.path / picture}`"
            for picture in run.missing_pictures()
        )
        kept = (
            f"stopped by {name} while writing the run's final files; {run.model_path} is written but "
            f"{', '.join(run.missing_pictures())} not: draw them with {draw}"
        )
    else:
        kept = f"stopped by {name} after the run's files were written; the run in {run.path} is finished"
    return TrainingInterruptedError(kept + ".", signum)


def sweep_stopped(signum: int, runs: list[tuple[str, Any, int]], command: str) -> str:
    """What a sweep stopped by ``signum`` says: which of its ``runs`` (name, :class:`RunFolder`, epochs; empty
    before they are planned) are finished, which resumable, and the ``command`` that continues it."""
    name = signal.Signals(signum).name
    if not runs:
        return f"sweep stopped by {name} while checking its combinations, before any run started: rerun `{command}`."
    groups: dict[str, list[str]] = {"finished": [], "stopped with a resumable checkpoint": [], "not started": []}
    for run, folder, epochs in runs:
        if folder.finished(epochs):
            groups["finished"].append(run)
        elif folder.checkpoint_path.exists() or folder.model_path.exists():
            groups["stopped with a resumable checkpoint"].append(run)
        else:
            groups["not started"].append(run)
    listed = "; ".join(f"{what}: {', '.join(names)}" for what, names in groups.items() if names)
    return f"sweep stopped by {name}; {listed}. Continue it with `{command}` (finished runs are skipped)."
