"""The one place errors become `Type: message` on stderr and an exit code (no traceback for user mistakes).

Exit codes: 0 ok; 1 a failure (GymctlError, an unhealthy server, failed rollouts); 2 a usage or config
error (UsageError, ConfigError, a bad flag or value); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any

from gymctl.errors import GymctlError, did_you_mean

EXIT_CODES = {0: "ok", 1: "failure (an error, an unhealthy server or container, failed rollouts)",
              2: "usage or config error (a bad flag, value, override or config file)", 130: "interrupted (Ctrl-C)"}


def _classes(*paths: str) -> tuple[type[BaseException], ...]:
    """Exception classes by dotted path; typer >= 0.29 vendors click, older typer uses click itself."""
    import importlib

    found = []
    for path in paths:
        module, _, name = path.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def _click(name: str) -> tuple[type[BaseException], ...]:
    return _classes(f"typer._click.exceptions.{name}", f"click.exceptions.{name}")


_CLICK_ERRORS = _click("ClickException")
_USAGE_ERRORS = _click("UsageError")
_BAD_PARAMETERS = _click("BadParameter")
_NO_SUCH_OPTIONS = _click("NoSuchOption")
_MISSING = _click("MissingParameter")
_NO_ARGS_HELP = _click("NoArgsIsHelpError")
_ABORTS = _classes("typer.exceptions.Abort", "click.exceptions.Abort")
_EXITS = _classes("typer.exceptions.Exit", "click.exceptions.Exit")
_NOT_ONE_OF = re.compile(r"(?:Value error, )?(.*) is not one of ")


def report(e: GymctlError) -> int:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return e.exit_code


def _option_names(command: Any) -> list[str]:
    return [o for p in getattr(command, "params", []) for o in (*p.opts, *getattr(p, "secondary_opts", [])) if o.startswith("-")]


def _param_hint(param: Any) -> str:
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0] if opts else str(getattr(param, "name", "") or "").upper()


def usage_message(e: Any) -> str:
    """A click usage error in gymctl's words, one line: what was wrong, the choices or a did-you-mean, where help is."""
    message, raw = str(e.format_message()), str(getattr(e, "message", ""))
    ctx = getattr(e, "ctx", None)
    command = getattr(ctx, "command", None)
    see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    if _NO_SUCH_OPTIONS and isinstance(e, _NO_SUCH_OPTIONS):
        name = str(getattr(e, "option_name", ""))
        return f"unknown option {name!r}{did_you_mean(name, _option_names(command))}{see}"
    param = getattr(e, "param", None)
    if _BAD_PARAMETERS and isinstance(e, _BAD_PARAMETERS) and param is not None and not (_MISSING and isinstance(e, _MISSING)):
        desc = getattr(param, "type_descriptor", None)
        given = _NOT_ONE_OF.match(raw)
        if desc is not None and getattr(desc, "is_choice", False) and desc.choices and given:
            choices = ", ".join(str(getattr(c, "value", c)) for c in desc.choices)
            return f"{_param_hint(param)} {given.group(1)} is not known; choose one of: {choices}"
        return f"{message}{see}"
    unknown = re.match(r"No such command '([^']+)'", message)
    commands = getattr(command, "commands", None)
    if unknown and commands is not None:
        return f"unknown command {unknown.group(1)!r}{did_you_mean(unknown.group(1), list(commands))}{see}"
    return f"{message.rstrip('.')}{see}"


def run_app(app: Any, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a typer app (or one click command); GymctlError -> message + exit code; a bad flag -> UsageError, 2; Ctrl-C -> 130."""
    try:
        app(args=args, prog_name=prog_name, standalone_mode=False)
    except GymctlError as e:
        sys.exit(report(e))
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as e:
        if _USAGE_ERRORS and isinstance(e, _USAGE_ERRORS):
            if not (_NO_ARGS_HELP and isinstance(e, _NO_ARGS_HELP)):  # `gymctl` alone: the help is the message
                print(f"UsageError: {usage_message(e)}", file=sys.stderr)
            sys.exit(2)
        if _CLICK_ERRORS and isinstance(e, _CLICK_ERRORS):
            e.show()  # type: ignore[attr-defined]
            sys.exit(getattr(e, "exit_code", 1))
        if _ABORTS and isinstance(e, _ABORTS):
            print("Aborted.", file=sys.stderr)
            sys.exit(130)
        if _EXITS and isinstance(e, _EXITS):
            sys.exit(getattr(e, "exit_code", 0))
        raise
