"""`PreemptionHandler`: a last snapshot, then exit, when the job is told to stop."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Iterable
from typing import Any

from ktrainer.training import extension
from ktrainer.training.extensions._snapshot import _Snapshot

logger = logging.getLogger("ktrainer.training.extensions.preemption")

SignalLike = int | str | signal.Signals

# Signals a process cannot catch.
_UNCATCHABLE = {
    getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)
}


def _to_signal(value: Any, signals: Any) -> signal.Signals:
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal, name, None)
        if not isinstance(number, signal.Signals):
            raise ValueError(
                "signals must name signals this platform has, such as "
                f"'SIGTERM' or signal.SIGUSR1. Received: signals={signals!r}"
            )
        value = number
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "signals must be a signal number or name, or a list of them. "
            f"Received: signals={signals!r}"
        )
    try:
        number = signal.Signals(value)
    except ValueError:
        raise ValueError(
            "signals must name signals this platform has. "
            f"Received: signals={signals!r}"
        ) from None
    if number in _UNCATCHABLE:
        raise ValueError(
            f"signals cannot include {number.name}, which no process can catch. "
            f"Received: signals={signals!r}"
        )
    return number


def _check_signals(signals: Any) -> tuple[signal.Signals, ...]:
    if isinstance(signals, (int, str)):
        values: Iterable = (signals,)
    elif isinstance(signals, Iterable):
        values = tuple(signals)
    else:
        raise TypeError(
            "signals must be a signal number or name, or a list of them. "
            f"Received: signals={signals!r}"
        )
    checked = tuple(dict.fromkeys(_to_signal(v, signals) for v in values))
    if not checked:
        raise ValueError(
            f"signals must name at least one signal. Received: signals={signals!r}"
        )
    return checked


class PreemptionHandler(extension.Extension):
    """Writes a last snapshot and exits when the job receives a signal.

    Clusters end jobs with a signal, then kill them a grace period later:
    SIGTERM from Kubernetes, most schedulers and `kill`, often SIGUSR1 (or
    another user-chosen signal) from SLURM's `--signal`. Without a handler
    the run dies and loses everything since its last snapshot. With this
    extension registered next to a `snapshot` extension, a signal among
    `signals`:

    1. is only recorded by the signal handler, so the current iteration
       (the update and every extension of that iteration) completes;
    2. then, at the end of that iteration (priority -1000, after the
       snapshot's -100), a snapshot is written through the given
       `snapshot` extension, with its writer, file name and `n_retains`
       (skipped if it already wrote one in this iteration), and the
       writer is finalized, so a `ThreadWriter`'s file is on disk;
    3. then training stops: under `Trainer.run()` by raising
       `SystemExit(exit_code)`, so the trainer finalizes every extension
       and the updater on the way out and the process exits with
       `exit_code`; inside `model.fit` (through `ExtensionsCallback`) by
       setting `model.stop_training`, so `fit` ends after that batch
       (Keras still runs that epoch's validation), and `SystemExit` is
       raised from this extension's `finalize`, at `on_train_end`.

    Started again with `autoload=True` on the snapshot extension, the run
    resumes from that snapshot, bit-identical to a run that was never
    stopped. A second signal of the same kind while the first is being
    handled restores the previous handler and delivers the signal to it
    (so a second Ctrl-C with `signals='SIGINT'` interrupts at once).

    With `Trainer(max_fused_steps=N)` the handler does not keep the run
    unfused (see `iterations_until_fire`): a signal is then acted on at the
    end of the fused run in progress, at most `N` iterations later, and
    the snapshot holds the state after that run.

    Signal handlers can only be installed in the main thread: call
    `trainer.run()` (or `fit`) there. The previous handlers are restored
    when training ends. The handler does nothing but record the signal,
    so it is safe whenever it runs. The extension needs no model state
    every iteration (`needs_model_state=False`); when it writes, it syncs
    the updater's state first. It keeps no state in snapshots.

    Args:
        snapshot: the snapshot extension, from `snapshot()` or
            `snapshot_object()`, registered on the same trainer.
        signals: the signals to handle: numbers (`signal.SIGUSR1`), names
            (`'SIGUSR1'` or `'USR1'`), or a list of them.
            Defaults to `signal.SIGTERM`.
        exit_code: the status the process exits with. Defaults to `None`:
            `128 + signal number` (143 for SIGTERM, 138 for SIGUSR1 on
            Linux), the status a shell reports for a process that the
            signal ended, so job scripts and schedulers see "terminated".

    Attributes:
        received: the signal that stopped training, or `None`.

    Example:

    ```python
    snap = extensions.snapshot(n_retains=2, autoload=True)
    trainer.extend(snap, trigger=(1000, "iteration"))
    trainer.extend(extensions.PreemptionHandler(snap, signals=["SIGTERM", "SIGUSR1"]))
    trainer.run()  # on SIGTERM: snapshot, then exit with status 143
    ```
    """

    trigger = (1, "iteration")
    priority = -1000
    needs_model_state = False

    def __init__(
        self,
        snapshot: _Snapshot,
        signals: SignalLike | Iterable[SignalLike] = signal.SIGTERM,
        exit_code: int | None = None,
    ) -> None:
        if not isinstance(snapshot, _Snapshot):
            raise TypeError(
                "snapshot must be the extension returned by snapshot() or "
                f"snapshot_object(). Received: snapshot={snapshot!r}"
            )
        if exit_code is not None and (
            isinstance(exit_code, bool) or not isinstance(exit_code, int)
        ):
            raise TypeError(
                "exit_code must be an int from 0 to 255 or None. "
                f"Received: exit_code={exit_code!r}"
            )
        if exit_code is not None and not 0 <= exit_code <= 255:
            raise ValueError(
                "exit_code must be an int from 0 to 255 or None. "
                f"Received: exit_code={exit_code!r}"
            )
        self.snapshot = snapshot
        self.signals = _check_signals(signals)
        self.exit_code = exit_code
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._exit_at_finalize: int | None = None

    def initialize(self, trainer) -> None:
        """Installs the signal handlers.

        Raises:
            RuntimeError: if training runs outside the main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "PreemptionHandler must be initialized in the main thread, the "
                "only one that can receive signals; run the trainer there. "
                f"Received: thread {threading.current_thread().name!r}"
            )
        self.received = None
        self._exit_at_finalize = None
        for number in self.signals:
            previous = signal.signal(number, self._handle)
            # None: a handler installed outside Python; restore the default.
            self._previous.setdefault(
                number, signal.SIG_DFL if previous is None else previous
            )

    def _handle(self, signum: int, frame: Any) -> None:
        number = signal.Signals(signum)
        if self.received is None:
            self.received = number
            return
        # Asked again: stop waiting for the iteration's end.
        signal.signal(number, self._previous.get(number, signal.SIG_DFL))
        signal.raise_signal(number)

    def iterations_until_fire(self, trainer) -> int | float:
        """Updates that may run before this extension must act.

        None is needed (`math.inf`) until a signal arrives: a trainer that
        fuses iterations may run as many as it likes, and the extension
        acts when it is next called; once a signal arrived, 1.
        """
        return math.inf if self.received is None else 1

    def __call__(self, trainer) -> None:
        """Writes the snapshot and stops training if a signal was received."""
        number = self.received
        if number is None:
            return
        sync = getattr(trainer.updater, "sync_model_state", None)
        if sync is not None:
            sync()
        self.snapshot.write_now(trainer)
        self.snapshot.finalize()
        code = 128 + int(number) if self.exit_code is None else self.exit_code
        logger.warning(
            "received %s: wrote a snapshot at iteration %d; exiting with status %d",
            number.name,
            trainer.updater.iteration,
            code,
        )
        if _is_trainer(trainer):
            raise SystemExit(code)
        # Inside model.fit: stop after this batch and exit once fit has
        # finalized the extensions (see finalize).
        trainer.updater.get_model().stop_training = True
        self._exit_at_finalize = code

    def finalize(self) -> None:
        """Restores the previous handlers; exits if `fit` was stopped by a signal."""
        if threading.current_thread() is threading.main_thread():
            for number, previous in self._previous.items():
                signal.signal(number, previous)
        self._previous = {}
        code, self._exit_at_finalize = self._exit_at_finalize, None
        if code is not None:
            raise SystemExit(code)


def _is_trainer(trainer) -> bool:
    from ktrainer.training.trainer import Trainer

    return isinstance(trainer, Trainer)
