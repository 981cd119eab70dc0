"""What the integration tasks share: secrets, redaction, retry defaults, settings.

A :class:`Credential` is a credential named by where it lives (a value, an
environment variable, a key of ``run(context={...})``); it is looked up when the
task runs and never shown. Every message these tasks build goes through
:func:`redact` with the run's secrets, so a token that a server echoes back in
an error body does not reach logs either.

Run-scoped resources will plug in here: :func:`setting` is the one place that
reads the run context, so ``context.resources`` becomes one more lookup.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sniffio

from .._masking import MASK, is_secret_key, mask_text
from ..errors import DremioFrameError

__all__ = [
    "REDACTED",
    "Credential",
    "CredentialValue",
    "TaskLibraryError",
    "is_secret_name",
    "redact",
    "redact_url",
    "require_asyncio",
    "resolve",
    "setting",
    "with_default_retry",
]

REDACTED = MASK


class TaskLibraryError(DremioFrameError):
    """Root of the errors raised by the HTTP, shell, email, S3, dbt and quality tasks."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential: a literal ``value``, an ``env`` variable or a run ``param``.

    ``param`` names a key of ``run(context={...})``; it wins over ``env`` when
    both are given and the run has it. The repr names the source, never the value.
    """

    value: str | None = field(default=None, repr=False)
    env: str | None = None
    param: str | None = None

    @classmethod
    def from_env(cls, name: str) -> Credential:
        return cls(env=name)

    @classmethod
    def from_context(cls, key: str, env: str | None = None) -> Credential:
        return cls(param=key, env=env)

    def get(self, context: Mapping[str, Any] | None = None) -> str | None:
        """The secret's text, or ``None`` when no source has it."""
        if self.param is not None and context is not None:
            params = getattr(context, "params", context)
            if self.param in params and params[self.param] is not None:
                return str(params[self.param])
        if self.env is not None and os.environ.get(self.env):
            return os.environ[self.env]
        return self.value

    def __repr__(self) -> str:
        where = [f"env={self.env!r}"] if self.env else []
        where += [f"param={self.param!r}"] if self.param else []
        where += [f"value={REDACTED!r}"] if self.value is not None else []
        return f"Credential({', '.join(where)})"


CredentialValue = str | Credential


def resolve(value: CredentialValue | None, context: Mapping[str, Any] | None) -> str | None:
    """A plain string as given, a :class:`Credential` looked up now, ``None`` as ``None``."""
    if isinstance(value, Credential):
        return value.get(context)
    return value


def setting(
    explicit: Any, context: Mapping[str, Any] | None, param: str, env: str, default: Any = None
) -> Any:
    """A non-secret option: given > ``run(context={param: ...})`` > ``$env`` > default."""
    if explicit is not None:
        return explicit
    params = getattr(context, "params", context) if context is not None else None
    if params is not None and params.get(param) is not None:
        return params[param]
    return os.environ.get(env) or default


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` masked by the package's one masking rule (``dremioframe_async._masking``):
    every non-trivial secret (4+ characters) raw, percent-encoded or as a URL path,
    secret-keyed values and URL passwords, replaced by ``***``."""
    return mask_text(text, secrets)


def redact_url(url: str) -> str:
    """A URL safe to show: no password in userinfo, secret-looking query values hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_secret_name(name: str) -> bool:
    """Whether a header, parameter or variable name holds a credential (by its words)."""
    return is_secret_key(name)


def with_default_retry(
    options: dict[str, Any], transient: tuple[type[BaseException], ...]
) -> dict[str, Any]:
    """Task options where ``retry_on`` defaults to the task's transient errors.

    The engine's own default retries every error but programming mistakes; an
    integration knows better which of its failures a second attempt can fix.
    """
    if options.get("retry_on") is None:
        return {**options, "retry_on": transient}
    return options


def require_asyncio(task: str, library: str) -> None:
    """Fail clearly when a task built on an asyncio-only library runs under trio.

    :raises TaskLibraryError: the running async library is not asyncio.
    """
    running = sniffio.current_async_library()
    if running != "asyncio":
        raise TaskLibraryError(f"{task} runs on {library}, which needs asyncio (not {running})")
