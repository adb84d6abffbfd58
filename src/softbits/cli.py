"""The ``softbits`` command line: the commands live with their subpackages and are registered
in :func:`_register_subcommands`.

Every user error is a :class:`~softbits.errors.SoftbitsError`; :func:`main` prints it as one
line (``error: …``) and exits with code 2.
"""

from __future__ import annotations

import functools
import importlib.util
import signal
import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from softbits.cliutil import console, err_console
from softbits.errors import ConfigError, SoftbitsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="softbits",
    help="Trainable bitwise soft quantization of input features: train, reproduce the paper, "
         "export a device encoder, serve predictions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from softbits import __version__

        console.print(f"softbits {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Trainable bitwise soft quantization of input features."""


#: third-party modules of each optional extra that a command needs (pyproject.toml extras)
_EXTRAS: dict[str, tuple[str, ...]] = {"serve": ("aiocoap", "fastapi", "uvicorn", "httpx", "prometheus_client", "aiomqtt")}


def _needing(extra: str, command: Callable[..., None]) -> Callable[..., None]:
    """``command`` refusing in one line, when run, while its extra is not installed; its
    options and ``--help`` stay as they are."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> None:
        missing = [m for m in _EXTRAS[extra] if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"softbits {command.__name__} needs the {extra} extra "
                              f"(missing {', '.join(missing)}): pip install 'softbits[{extra}]'")
        command(*args, **kwargs)

    return checked


def _register_subcommands() -> None:
    """Add the commands that live with their subpackages, in the order ``--help`` lists them.

    Imported here, not at the top: they load only when the command line is built.
    """
    from softbits.device import commands as device
    from softbits.experiments import commands as experiments
    from softbits.serve import commands as serve
    from softbits.training import commands as training

    app.command(name="train")(training.train)
    app.command(name="reproduce")(experiments.reproduce)
    app.command(name="report")(experiments.report)
    app.command(name="frontier")(experiments.frontier)
    app.command(name="export")(device.export)
    app.command(name="encode")(device.encode_cmd)
    app.command(name="predict")(device.predict)
    app.command(name="serve")(_needing("serve", serve.serve))
    app.command(name="send")(_needing("serve", serve.send))


_register_subcommands()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does: worker pools
    are shut down (a killed ``reproduce`` leaves no workers computing for nobody) and finished
    results stay stored."""


#: set by the SIGTERM handler: click turns every KeyboardInterrupt into a returned 130
_signals: set[int] = set()


def _raise_terminated(signum: int, frame: object) -> None:
    _signals.add(signum)
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors → one line on stderr and exit code 2; Ctrl-C → 130,
    SIGTERM → 143, each after an orderly unwind."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # without standalone mode typer turns Ctrl-C into a returned 130, not an exception
        code = app(args=argv, standalone_mode=False)
        if code == 130:
            raise Terminated if signal.SIGTERM in _signals else KeyboardInterrupt
    except SoftbitsError as exc:
        # escaped: a message may hold brackets ("softbits[serve]", "[N, 4]") that are not markup
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Terminated:
        err_console.print("terminated")
        raise SystemExit(143) from None
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        raise SystemExit(130) from None
    except Exception as exc:
        # click's usage errors (typer vendors click) carry their own message and exit code
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            raise SystemExit(code) from None
        raise


if __name__ == "__main__":
    main()
