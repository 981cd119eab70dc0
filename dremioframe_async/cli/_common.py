"""What the commands share: exit codes, errors, loading a pipeline, params, the store."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import shlex
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from ..errors import DremioFrameError
from ..orchestration import Pipeline
from ..progress import describe
from ..store import (
    RunInfo,
    RunNotFound,
    RunStore,
    SQLiteStore,
    StoreUnavailable,
    default_store_url,
    open_store,
)
from ..store._codec import storable_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_HISTORY_LOST, EXIT_STORE = 3, 4

Handler = Callable[[argparse.Namespace], int]


class UsageError(DremioFrameError):
    """Bad command-line input; reported on stderr with exit code 2."""


class PipelineImportError(UsageError):
    """The module named on the command line raised while it was imported or built.

    The message names the module and the user's own exception (type and message);
    the exception itself is ``__cause__`` (``--traceback`` shows it).
    """

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        self.cause = cause
        super().__init__(f"{describe(cause)}{hint(cause)} (raised while {where})")


def hint(error: BaseException) -> str:
    """A word on what a bare ``KeyError('DREMIO_URL')`` most likely means."""
    key = error.args[0] if isinstance(error, KeyError) and error.args else None
    if isinstance(key, str) and key.isupper() and key not in os.environ:
        return f": the environment variable {key} is not set"
    return ""


def error_line(command: str | None, text: str) -> None:
    """Print ``dremioframe-async COMMAND: error: TEXT`` on stderr."""
    prog = "dremioframe-async" + (f" {command}" if command else "")
    print(f"{prog}: error: {text}", file=sys.stderr)


# ---------------------------------------------------------------- registering a command

STORE_HELP = "run store URL (default: $DREMIOFRAME_ASYNC_STORE or the user's SQLite file)"


def add_command(
    commands: Any,
    common: argparse.ArgumentParser,
    name: str,
    handler: Handler,
    help: str,
    *,
    store: bool = True,
    reads_only: bool = False,
    refusal_exit: int = EXIT_FAILED,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (with ``--traceback``, and ``--store`` unless ``store=False``).

    ``reads_only``: the command only prints, so a reader that went away
    (``show ID | head``) is success. ``refusal_exit``: the exit code of a
    ``LookupError``/``ValueError`` it raises (``EXIT_USAGE`` where those mean
    "what you asked cannot be done", such as resuming another pipeline's run).
    """
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=help, parents=[common]
    )
    sub.set_defaults(handler=handler, reads_only=reads_only, refusal_exit=refusal_exit)
    if store:
        sub.add_argument("--store", metavar="URL", help=STORE_HELP)
    return sub


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1.

    :raises argparse.ArgumentTypeError: for anything else.
    """
    # 0 would print "no runs recorded" over a full store; SQLite reads -1 as "all".
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


# ---------------------------------------------------------------- loading pipelines


def load_pipeline(ref: str) -> Pipeline:
    """Resolve ``module:attr`` (dotted module or ``path/to/file.py``) to a Pipeline.

    ``attr`` must be a Pipeline, or a function taking no arguments whose return
    annotation is ``Pipeline``: nothing else is called.

    :raises UsageError: when the reference is malformed or does not lead to a Pipeline.
    :raises PipelineImportError: when importing the module, or the factory, raised.
    """
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:pipeline (e.g. my_etl:pipeline), got {ref!r}")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Pipeline):
        return obj
    _check_factory(ref, obj)
    try:
        built = obj()
    except Exception as exc:
        raise PipelineImportError(f"calling {ref}", exc) from exc
    if not isinstance(built, Pipeline):
        raise UsageError(f"{ref}() returned a {type(built).__name__}, not a Pipeline")
    return built


def _check_factory(ref: str, obj: Any) -> None:
    """Refuse anything but a plain function declared ``-> Pipeline`` with no required arguments."""
    what = f"{ref} is a {type(obj).__name__}"
    if not inspect.isfunction(obj):
        raise UsageError(f"{what}, not a Pipeline or a function returning one")
    if not _is_plain_function(obj):
        # Calling it would only make a coroutine (or generator) and warn that it was never run.
        raise UsageError(f"{ref} is an async or generator function; make it a plain `def`")
    if not _returns_pipeline(obj):
        raise UsageError(
            f"{what} not declared to return a Pipeline: annotate it `-> Pipeline` "
            "(the command line calls nothing else)"
        )
    required = [
        p.name
        for p in inspect.signature(obj).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise UsageError(
            f"{ref} needs arguments ({', '.join(required)}); the command line gives none"
        )


def _is_plain_function(fn: Callable[..., Any]) -> bool:
    return not (
        inspect.iscoroutinefunction(fn)
        or inspect.isgeneratorfunction(fn)
        or inspect.isasyncgenfunction(fn)
    )


def _returns_pipeline(fn: Callable[..., Any]) -> bool:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that cannot be resolved: read it as written
        hint = fn.__annotations__.get("return")
    if isinstance(hint, str):
        return hint.rsplit(".", 1)[-1] == "Pipeline"
    return isinstance(hint, type) and issubclass(hint, Pipeline)


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name:
        return _import_file(Path(name))
    _add_to_path(os.getcwd())  # console scripts do not put the cwd on sys.path
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(
                f"no module named {name!r} (run from its directory or give a .py path)"
            ) from None
        raise PipelineImportError(f"importing {name}", exc) from exc
    except Exception as exc:
        raise PipelineImportError(f"importing {name}", exc) from exc


def _add_to_path(folder: str) -> None:
    # At the end: a file in the user's folder never shadows an installed module.
    if folder not in sys.path:
        sys.path.append(folder)


def _module_name(path: Path) -> str:
    """The file's stem, unless that name belongs to another module already importable."""
    stem = path.stem
    if stem.isidentifier() and stem not in sys.modules:
        try:
            spec = importlib.util.find_spec(stem)
        except (ImportError, ValueError):
            spec = None
        else:
            # Importable as itself (its folder is on sys.path): the name a sibling's
            # `from stem import pipeline` gives it too, so both share one module.
            if spec is None or _same_file(spec.origin, path):
                return stem
    return f"_dremioframe_async_user_{abs(hash(str(path.resolve())))}_{stem}"


def _same_file(origin: str | None, path: Path) -> bool:
    try:
        return origin is not None and Path(origin).resolve() == path.resolve()
    except OSError:
        return False


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    loaded = sys.modules.get(path.stem)
    if loaded is not None and _same_file(getattr(loaded, "__file__", None), path):
        return loaded  # a sibling imported it already: one module, one Pipeline object
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    _add_to_path(str(path.resolve().parent))  # let it import its siblings
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise PipelineImportError(f"importing {path}", exc) from exc
    return module


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; each value is parsed as JSON when it is JSON, else kept as text.

    ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (Python's parser takes
    them, the run history could not store them as JSON): they stay text.

    :raises UsageError: for a pair without ``=``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes key=value, got {pair!r}")
        params[key] = _json_or_text(value)
    return params


def _json_or_text(text: str) -> Any:
    seen: list[str] = []  # NaN, Infinity or -Infinity somewhere in it
    try:
        value = json.loads(text, parse_constant=seen.append)
    except ValueError:
        return text
    return text if seen else value


# ---------------------------------------------------------------- the run store


async def with_store(url: str | None, work: Callable[[RunStore], Awaitable[int]]) -> int:
    """Open the store at ``url`` (or the default), run ``work`` on it, close it."""
    store = open_store(url or default_store_url())
    try:
        return await work(store)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await store.aclose()


def existing_store(url: str | None) -> str | None:
    """``url``, after checking that a SQLite file named by ``--store`` exists already.

    Opening would create it (and its folders), and a typo in ``--store`` would then
    read as "no runs recorded".

    :raises StoreUnavailable: when it does not.
    """
    if url is None:
        return url  # the configured file: "no runs recorded" is the truth before a first run
    store = open_store(url)  # connects on first use only
    if not isinstance(store, SQLiteStore) or store.path == ":memory:":
        return url
    path = Path(store.path)
    if not path.parent.is_dir():
        raise StoreUnavailable(store.name, f"no such folder: {path.parent}{store.path_hint()}")
    if not path.exists():
        why = "no such file: nothing was ever recorded there"
        raise StoreUnavailable(store.name, why + store.path_hint())
    return url


def ui_hint(store_url: str | None, run_id: str) -> str:
    """How to see run ``run_id`` (its graph, timeline and task logs) in the web UI."""
    given = store_url and store_url != default_store_url()
    store = f" --store {shlex.quote(store_url)}" if given and store_url else ""
    return (
        f"See this run, its timeline and its tasks' logs in the web UI:\n"
        f"  dremioframe-async ui{store}\n"
        f"  then open http://127.0.0.1:8080/runs/{run_id}"
    )


async def find_run(store: RunStore, prefix: str) -> RunInfo:
    """The run whose id is ``prefix`` or the only one starting with it.

    :raises UsageError: when no run, or more than one, matches.
    """
    if not prefix.strip():
        # Every id starts with "": `show "$RUN_ID"` with the variable unset.
        raise UsageError("RUN_ID is empty: give a run id or a prefix of one (see `runs`)")
    prefix = storable_text(prefix)  # ids are stored escaped like this, and a store can take it
    try:
        return await store.get_run(prefix)
    except RunNotFound:
        pass
    matches = [r for r in await store.list_runs(limit=None) if r.run_id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {prefix!r} in the store (nor one whose id starts with it)")
    ids = ", ".join(r.run_id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise UsageError(
        f"run id prefix {prefix!r} is ambiguous: {len(matches)} runs match ({ids}); give more of it"
    )


def when(t: float | None) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM:SS``, or ``-``."""
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
