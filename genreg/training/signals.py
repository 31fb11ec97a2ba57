"""SIGINT and SIGTERM during training: finish the step under way, keep the last checkpoint, say how to go on."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from genreg.errors import TrainingInterruptedError
from genreg.files.run_folder import RunFolder
from genreg.training import distributed


class StopRequest:
    """Set by a signal handler; read by the training loop between steps."""

    signum: int | None = None
    AGREE_EVERY = 20  # steps; ranks must stop at the same step, so with several they agree only this often

    def agreed(self, step: int, world: distributed.World) -> int:
        """The signal to stop for (0: none); with several ranks, any rank's signal stops all of them together."""
        if not world.distributed:
            return self.signum or 0
        if step % self.AGREE_EVERY:
            return 0
        return int(distributed.max_over_ranks(torch.tensor([self.signum or 0]))[0])


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training, SIGINT and SIGTERM ask the loop to stop after the current step.

    The first signal only sets the request (the step, and a checkpoint being
    written, finish); the handlers in place before are restored at once, so a
    second Ctrl-C acts as it always does. Outside the main thread, where Python
    cannot handle signals, nothing changes.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: object) -> None:
        request.signum = signum
        for number, handler in previous.items():
            signal.signal(number, handler)

    for signum in previous:
        signal.signal(signum, handle)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(signum: int, epoch: int, folder: Path | None) -> TrainingInterruptedError:
    """The error that ends a run stopped by a signal during ``epoch`` (0-based), saying what was kept."""
    name = signal.Signals(signum).name
    if folder is None:
        kept = "nothing was saved (no run folder)"
    else:
        kept = (
            f"{RunFolder(folder).checkpoint_path} holds the state after epoch {epoch}; continue with "
            f"`genreg run SPEC --out {folder} --resume` (epoch {epoch + 1} is trained again from its start, "
            "to the same weights as a run that was never stopped)"
        )
    return TrainingInterruptedError(f"training stopped by {name} during epoch {epoch + 1}; {kept}.", signum)
