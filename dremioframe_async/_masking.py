"""One way to hide secrets, for everything that shows or stores text: the UI, the
CLI's ``show``, task errors, captured output and the run store's error rows.

Three rules, applied together by :func:`mask_text` and :func:`mask_value`:

* **Keys.** A value under a key whose *words* include a secret word (``pat``,
  ``token``, ``secret``, ``password``, ``pwd``, ``passwd``, ``key``,
  ``credential``, ``auth`` and a few more, see :data:`SECRET_WORDS`) is hidden.
  Words, not substrings: ``dremio_pat``, ``api_key``, ``apiKey`` and
  ``X-Auth-Token`` are secret; ``author``, ``passenger_count`` and ``keyboard``
  are not. In free text the rule covers ``key=value`` pairs (query strings,
  ``dsn`` strings, echoed forms), quoted ``"key": "value"`` pairs (JSON, reprs)
  and ``Authorization: ...`` header lines.
* **URLs.** The password in any URL's userinfo (``scheme://user:password@host``)
  is hidden wherever the URL appears.
* **Known values.** A secret the caller knows (a task's credentials) is hidden in
  every form it travels in: raw, percent-encoded (``quote`` and ``quote_plus``),
  and, for a secret that is itself a URL (a webhook), its path, which servers
  echo back in their errors.

This module imports nothing from the rest of the package, so every layer may use
it (``orchestration/`` does not need it: the store masks errors as it records them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "error_text",
    "head_without_secrets",
    "is_secret_key",
    "margin",
    "mask_text",
    "mask_url_password",
    "mask_value",
    "secret_forms",
    "tail_without_secrets",
]

MASK = "***"
# Whole words of a key that mark its value secret. Joined spellings that people
# write as one word (apikey, accesskey) are listed, since the word splitter cannot
# cut them.
SECRET_WORDS = frozenset(
    {
        "pat",
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "pwd",
        "passphrase",
        "key",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "signature",
        "sig",
        "sessionid",
        "sslpassword",
    }
)
MIN_SECRET = 4  # shorter known values are too common in ordinary text to replace
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# scheme://user:password@ : the userinfo as urlsplit reads it, which ends at the first
# "/", "?" or "#" (a "/" in a password must be sent as %2F), so that an "@" further on,
# in a path or a query (email=a@b.com), is not taken for one.
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)(?P<pw>[^\s@/?#\"'<>]*)@"
)
# Each pattern's group "prefix" is kept and its group "val" replaced when "key" is secret.
# key=value (query strings, libpq DSNs, echoed forms); key%3Dvalue once percent-encoded
_PAIR = re.compile(
    r"(?P<prefix>(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?:\s*=\s*|%3[Dd]))"
    r"(?P<val>\"[^\"]*\"|'[^']*'|[^\s&;,\"'<>)\]}]+)"
)
# "key": "value" and 'key': 'value' (JSON, Python reprs)
_QUOTED = re.compile(
    r"(?P<prefix>(?P<q>[\"'])(?P<key>[^\"'\s]{1,100})(?P=q)\s*:\s*)"
    r"(?P<val>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,}\]]+)"
)
# Authorization: Bearer abc / X-Api-Key: abc  (header lines echoed in errors or output)
_HEADER = re.compile(
    r"(?m)^(?P<prefix>[ \t]*(?P<key>[A-Za-z][A-Za-z0-9-]*):[ \t]*)(?P<val>\S[^\r\n]*)$"
)
_INLINE_AUTH = re.compile(
    r"(?i)(?P<prefix>\b(?P<key>authorization)\s*:\s*)(?P<val>[^\s,;]+(?:\s+[^\s,;'\"]+)?)"
)
_MASKED = frozenset({MASK, f'"{MASK}"', f"'{MASK}'"})


def is_secret_key(name: object) -> bool:
    """Whether a key, header, parameter or variable name holds a credential (by its words)."""
    text = str(name)
    if text.lower() in SECRET_WORDS:
        return True
    return any(w.lower() in SECRET_WORDS for w in _WORD.findall(text))


def mask_url_password(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@" if m["pw"] else m[0], text)


def secret_forms(secrets: Iterable[str | None]) -> list[str]:
    """Every form of each known secret worth looking for, longest first."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < MIN_SECRET:
            continue
        found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), unquote(secret)}
        path = _url_path(secret)
        if path:
            found |= {path, quote(path), unquote(path)}
        forms |= {f for f in found if len(f) >= MIN_SECRET}
    return sorted(forms, key=len, reverse=True)


def _url_path(value: str) -> str | None:
    """The path (and query) of a URL-looking secret, when long enough to be telling."""
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # "/" or "/api" would hide ordinary text; a webhook's path is long and random.
    return path if len(path.strip("/")) >= 8 else None


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when that raises: an exception that cannot be
    printed must not stop what shows or stores it (mask the text as usual)."""
    try:
        return str(error)
    except Exception as exc:
        return f"<str() of {type(error).__name__} raised {type(exc).__name__}>"


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with known ``secrets`` (in every form), secret-keyed values and URL
    passwords replaced by :data:`MASK`."""
    for form in secret_forms(secrets):
        if form in text:
            text = text.replace(form, MASK)
    if "://" in text:
        text = mask_url_password(text)
    if "=" in text or "%3" in text:
        text = _PAIR.sub(_hide, text)
    if ":" in text:
        if "'" in text or '"' in text:
            text = _QUOTED.sub(_hide, text)
        text = _HEADER.sub(_hide_header, text)
        text = _INLINE_AUTH.sub(_hide, text)
    return text


def _hide(match: re.Match[str]) -> str:
    value = match["val"]
    if value in _MASKED or not is_secret_key(match["key"]):
        return match[0]
    if match.re is _PAIR and match["key"].lower() == "key":
        # In free text a bare "key=value" is usually prose ("--param takes key=value");
        # api_key=..., key names in data (mask_value) and JSON pairs are still masked.
        return match[0]
    quote_char = value[0] if value[0] in "\"'" and value[-1] == value[0] else ""
    return f"{match['prefix']}{quote_char}{MASK}{quote_char}"


def _hide_header(match: re.Match[str]) -> str:
    # A header name ("X-Api-Key", "Authorization") never joins a lowercase letter to an
    # uppercase one, so prose such as "KeyError: ..." at the start of a line stays.
    if re.search(r"[a-z][A-Z]", match["key"]):
        return match[0]
    return _hide(match)


def mask_value(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """``value`` (JSON-like data) with secret-keyed entries replaced by :data:`MASK` and
    every string masked by :func:`mask_text`."""
    forms = tuple(secrets)
    if isinstance(value, Mapping):
        return {
            str(k): MASK if is_secret_key(k) else mask_value(v, forms) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_value(v, forms) for v in value]
    if isinstance(value, str):
        return mask_text(value, forms)
    return value


def tail_without_secrets(text: str, limit: int, secrets: Iterable[str | None] = ()) -> str:
    """The last ``limit`` characters of ``text`` once masked, with no piece of a secret.

    ``text`` must reach back far enough before its last ``limit`` characters to hold
    the start of any secret ending inside them (see :func:`margin`); masking first and
    cutting second means the cut can only fall inside :data:`MASK`, never a secret.
    """
    masked = mask_text(text, secrets)
    return masked if len(masked) <= limit else masked[len(masked) - limit :]


def head_without_secrets(text: str, limit: int, secrets: Iterable[str | None] = ()) -> str:
    """The first ``limit`` characters of ``text`` once masked, with no piece of a secret
    (``text`` must run :func:`margin` characters past the cut, when there is more)."""
    masked = mask_text(text, secrets)
    return masked if len(masked) <= limit else masked[:limit]


def margin(secrets: Iterable[str | None] = ()) -> int:
    """How much text to keep before a cut so that :func:`tail_without_secrets` sees
    whole secrets (and the key of a ``key=value`` pair) on both sides of it."""
    return max((len(f) for f in secret_forms(secrets)), default=0) + 512
