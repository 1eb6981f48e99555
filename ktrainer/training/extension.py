"""The extension protocol: what a trainer calls after each update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PRIORITY_WRITER = 300
"""Priority of extensions that write observations (e.g. `Evaluator`)."""
PRIORITY_EDITOR = 200
"""Priority of extensions that edit observations written by writers."""
PRIORITY_READER = 100
"""Priority of extensions that only read observations (e.g. `LogReport`)."""

_ACCESS = ("none", "read", "write", "read_write")


class Extension:
    """Base class of trainer extensions.

    An extension is a callable that the `Trainer` invokes with itself after
    each update whenever the extension's trigger fires. Extensions run in
    descending `priority`; ties run in registration order. Subclasses
    override `__call__` and may override `initialize` (called once when
    `Trainer.run` starts, also after a resume), `on_error` (called when the
    loop raises), `finalize` (called when the loop ends, normally or not)
    and `serialize` (state that a snapshot keeps).

    Class attributes give the defaults that `Trainer.extend` uses when it
    is not told otherwise:

    - `trigger`: when to run. Defaults to `(1, 'iteration')`.
    - `priority`: the order within an iteration. Defaults to
      `PRIORITY_READER`.
    - `name`: the registered name; `None` means `default_name`, the class
      name.
    - `model_state`: what the extension does with model and optimizer
      variables, so that the trainer does only what that needs:

      - `'none'`: it touches no variables (it reads observations, writes
        files). Nothing is synced for it.
      - `'read'`: it reads variables (weights, the learning rate). On jax,
        where the updater keeps training state as arrays between steps
        (as `fit` does), the arrays are written back into the variables
        before it runs: a pointer assignment per variable, no copy.
        Elsewhere nothing is needed.
      - `'write'`: it only assigns variables, without reading their
        current values (a learning-rate shift). Nothing is synced before
        it; afterwards the next step takes the new values of exactly the
        variables it assigned.
      - `'read_write'`: both.

      Defaults to `None`, which means `'read_write'` unless the older
      `needs_model_state = False` is set (then `'none'`). A plain
      function gets `'read_write'`: correct whatever it does, and cheap,
      because a sync copies nothing. An extension that reads variables
      must declare `'read'` or `'read_write'`: between syncs a jax
      variable may hold an array that the next step has consumed.
    - `needs_model_state`: the older, boolean form of `model_state`
      (pytorch-pfn-extras's name): `False` means `'none'`. Defaults to
      `True`.
    """

    trigger: Any = (1, "iteration")
    priority: int = PRIORITY_READER
    name: str | None = None
    model_state: str | None = None
    needs_model_state: bool = True

    @property
    def default_name(self) -> str:
        """The name used when neither `extend` nor `name` gives one."""
        return type(self).__name__

    def __call__(self, trainer) -> Any:
        """Runs the extension; subclasses must override this."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(trainer)."
        )

    def initialize(self, trainer) -> None:
        """Prepares the extension when training starts or resumes."""

    def on_error(self, trainer, exc: BaseException, tb) -> None:
        """Reacts to an exception raised inside the training loop."""

    def finalize(self) -> None:
        """Releases resources when the training loop ends."""

    def serialize(self, serializer) -> None:
        """Saves or loads the extension's state; stateless by default."""


def make_extension(
    trigger: Any = None,
    default_name: str | None = None,
    priority: int | None = None,
    finalizer: Callable[[], None] | None = None,
    initializer: Callable[[Any], None] | None = None,
    on_error: Callable[[Any, BaseException, Any], None] | None = None,
    needs_model_state: bool = True,
    model_state: str | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator that turns a function of the trainer into an extension.

    The function keeps working as a plain function; the decorator only
    attaches the attributes that `Trainer.extend` reads.

    Args:
        trigger: default trigger. Defaults to `(1, 'iteration')`.
        default_name: default name. Defaults to the function's `__name__`.
        priority: default priority. Defaults to `PRIORITY_READER`.
        finalizer: called when training ends. Defaults to `None`.
        initializer: called with the trainer when training starts.
            Defaults to `None`.
        on_error: called with `(trainer, exc, tb)` when the loop raises.
            Defaults to `None`.
        needs_model_state: see `Extension.needs_model_state`.
            Defaults to `True`.
        model_state: `'none'`, `'read'`, `'write'` or `'read_write'`; see
            `Extension.model_state`. Defaults to `None` (from
            `needs_model_state`).

    Returns:
        A decorator that returns the function itself.
    """
    if model_state is not None and model_state not in _ACCESS:
        raise ValueError(
            f"model_state must be one of {_ACCESS}. "
            f"Received: model_state={model_state!r}"
        )
    if trigger is None:
        trigger = Extension.trigger
    if priority is None:
        priority = Extension.priority

    def decorator(ext: Callable) -> Callable:
        if not callable(ext):
            raise TypeError(
                f"make_extension decorates a callable. Received: ext={ext!r}"
            )
        ext.trigger = trigger
        ext.default_name = default_name or getattr(ext, "__name__", type(ext).__name__)
        ext.priority = priority
        ext.finalize = finalizer
        ext.on_error = on_error
        ext.initialize = initializer
        ext.needs_model_state = needs_model_state
        ext.model_state = model_state
        return ext

    return decorator
