"""Connection settings for the server engines: URL, user and password or API key, CA bundle, TLS verification.

Each setting comes from a flag (a keyword argument here) or else from an environment variable named after
the engine::

    HYBRID_SEARCH_OPENSEARCH_URL       HYBRID_SEARCH_ELASTICSEARCH_URL       HYBRID_SEARCH_QDRANT_URL
    HYBRID_SEARCH_OPENSEARCH_USER      ..._ELASTICSEARCH_USER                ..._QDRANT_USER (unused by Qdrant)
    HYBRID_SEARCH_OPENSEARCH_PASSWORD  ..._ELASTICSEARCH_PASSWORD
    HYBRID_SEARCH_OPENSEARCH_API_KEY   ..._ELASTICSEARCH_API_KEY             ..._QDRANT_API_KEY
    HYBRID_SEARCH_OPENSEARCH_CA_CERTS  ..._ELASTICSEARCH_CA_CERTS            ..._QDRANT_CA_CERTS
    HYBRID_SEARCH_OPENSEARCH_VERIFY    ..._ELASTICSEARCH_VERIFY              ..._QDRANT_VERIFY   (true/false)
    HYBRID_SEARCH_OPENSEARCH_TIMEOUT   ..._ELASTICSEARCH_TIMEOUT             ..._QDRANT_TIMEOUT  (seconds)

Secrets never reach a log: :class:`Credentials` masks the password and API key in its ``repr``, a
``user:password@`` part of a URL is moved out of the URL (which is what gets printed) into the credentials, and
:func:`redact` is the one rule for any text that may still hold a location (messages, reports, logs, the UI).

Example:
    >>> creds = Credentials.resolve("opensearch", url="https://admin:s3cret@localhost:9200")
    >>> creds
    Credentials(url='https://localhost:9200', username='admin', password='***', api_key=None, ca_certs=None, verify=True, timeout=10.0)
"""

from __future__ import annotations

import argparse
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

ENGINES = ("opensearch", "elasticsearch", "qdrant")
_MASK = "***"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Seconds a request waits for the server's answer (``--timeout``, ``HYBRID_SEARCH_<ENGINE>_TIMEOUT``). A healthy
#: server answers a search in milliseconds and a bulk request of a few hundred documents in about a second.
DEFAULT_TIMEOUT = 10.0
#: Transport-level retries of a request that could not be sent (connection refused or reset) or that the server
#: turned away as busy (429/502/503/504). A request that timed out is not retried: a server that accepts
#: connections and never answers fails after one ``timeout``, not after (1 + retries) of them.
DEFAULT_RETRIES = 2


#: ``scheme://userinfo@``: the user info of a URL anywhere in a text (to its last ``@`` before a ``/`` or space,
#: as ``urlsplit`` reads it, so a password holding ``@`` is masked whole).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]+)@")


def redact(text: object) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``.

    Every location or message that can reach a user (a printed report, an error, a log line, the UI's page)
    goes through here, so the rule is in one place. The user name goes too: half a credential is still one.

    Example:
        >>> redact("cannot reach qdrant+http://bob:pa55@db:6333 (http://db:6333 is fine)")
        'cannot reach qdrant+http://***@db:6333 (http://db:6333 is fine)'
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}{_MASK}@", str(text))


def env_name(engine: str, setting: str) -> str:
    """``HYBRID_SEARCH_<ENGINE>_<SETTING>``, e.g. ``env_name("opensearch", "url")``."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return f"HYBRID_SEARCH_{engine.upper()}_{setting.upper()}"


def parse_bool(value: str | bool, *, name: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user:password@, user, password)``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password


def parse_timeout(value: str | float, *, name: str = "timeout") -> float:
    """Seconds, a finite number above 0."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be a number of seconds above 0, got {value!r}")
    return seconds


#: Each setting :meth:`Credentials.resolve` takes as a flag, and the suffix of its environment variable.
_SETTINGS = {
    "url": "url",
    "username": "user",
    "password": "password",
    "api_key": "api_key",
    "ca_certs": "ca_certs",
    "verify": "verify",
    "timeout": "timeout",
}


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to one server. Build it with :meth:`resolve`."""

    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify: bool = True
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        def masked(secret: str | None) -> str:
            return repr(_MASK) if secret else "None"

        return (
            f"Credentials(url={self.url!r}, username={self.username!r}, password={masked(self.password)}, "
            f"api_key={masked(self.api_key)}, ca_certs={self.ca_certs!r}, verify={self.verify!r}, "
            f"timeout={self.timeout!r})"
        )

    __str__ = __repr__

    @classmethod
    def resolve(cls, engine: str, *, environ: Mapping[str, str] | None = None, **flags: Any) -> Credentials:
        """Flags win over environment variables; ``user:password@`` in the URL is used when neither gives a
        user.

        Args:
            engine: whose environment variables to read (``HYBRID_SEARCH_<ENGINE>_*``, :func:`env_name`).
            environ: the environment (default ``os.environ``).
            flags: ``url``, ``username``, ``password``, ``api_key``, ``ca_certs``, ``verify`` (a bool or its
                text), ``timeout`` (seconds, a number or its text); ``None`` means not given.
        """
        unknown = sorted(set(flags) - set(_SETTINGS))
        if unknown:
            raise TypeError(f"unknown credential settings: {', '.join(unknown)}")
        env = os.environ if environ is None else environ
        given = {name: value for name, value in flags.items() if value is not None}
        raw = {name: given.get(name, env.get(env_name(engine, setting)) or None) for name, setting in _SETTINGS.items()}
        clean_url, url_user, url_password = split_userinfo(raw["url"]) if raw["url"] else (None, None, None)
        user, secret = raw["username"], raw["password"]
        if user is None and url_user is not None:
            user, secret = url_user, secret if secret is not None else url_password
        verify, timeout = raw["verify"], raw["timeout"]
        return cls(
            url=clean_url,
            username=user,
            password=secret,
            api_key=raw["api_key"],
            ca_certs=raw["ca_certs"],
            verify=True if verify is None else parse_bool(verify, name=env_name(engine, "verify")),
            timeout=DEFAULT_TIMEOUT
            if timeout is None
            else parse_timeout(timeout, name="--timeout" if "timeout" in given else env_name(engine, "timeout")),
        )

    def with_url(self, url: str) -> Credentials:
        """The same credentials for another URL (its ``user:password@``, if any, is moved out of it)."""
        clean, user, password = split_userinfo(url)
        if user is not None and self.username is None:
            return replace(self, url=clean, username=user, password=self.password or password)
        return replace(self, url=clean)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username else None

    # --- client keyword arguments ---------------------------------------------------------------
    def _tls(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.url and self.url.startswith("https://"):
            out["verify_certs"] = self.verify
            if self.ca_certs:
                out["ca_certs"] = self.ca_certs
            if not self.verify:
                out["ssl_show_warn"] = False  # the user chose this; don't warn on every request
        return out

    def _transport(self) -> dict[str, Any]:
        """What both Lucene-family clients take alike: the host, retries, and TLS."""
        return {"hosts": [self.url], "max_retries": DEFAULT_RETRIES, "retry_on_timeout": False, **self._tls()}

    def opensearch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``opensearchpy.OpenSearch``."""
        kwargs = {**self._transport(), "timeout": self.timeout}
        if self.url and self.url.startswith("https://"):
            kwargs["use_ssl"] = True
        if self.api_key:  # OpenSearch >= 3.7 API keys (Security plugin): "Authorization: ApiKey <token>"
            kwargs["headers"] = {"Authorization": f"ApiKey {self.api_key}"}
        elif self.basic_auth:
            kwargs["http_auth"] = self.basic_auth
        return kwargs

    def elasticsearch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``elasticsearch.Elasticsearch``."""
        kwargs = {**self._transport(), "request_timeout": self.timeout}
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.basic_auth:
            kwargs["basic_auth"] = self.basic_auth
        return kwargs

    def client_kwargs(self, engine: str) -> dict[str, Any]:
        """Keyword arguments for ``engine``'s client: :meth:`opensearch_kwargs`, :meth:`elasticsearch_kwargs` or
        :meth:`qdrant_kwargs`."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        return getattr(self, f"{engine}_kwargs")()

    def qdrant_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``qdrant_client.QdrantClient`` (a server URL)."""
        # qdrant-client takes whole seconds
        kwargs: dict[str, Any] = {"url": self.url, "timeout": max(1, math.ceil(self.timeout))}
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.url and self.url.startswith("https://"):
            kwargs["verify"] = ssl.create_default_context(cafile=self.ca_certs) if self.ca_certs else self.verify
        return kwargs


# --- command-line flags ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--user``, ``--password``, ``--api-key``, ``--ca-certs``, ``--no-verify`` and ``--timeout`` to a command.

    ``--timeout`` is also spelt ``--server-timeout``, the only spelling on a command that has a ``--timeout``
    of its own.

    Passwords and keys are better left to the environment variables: flags show up in shell history and
    process listings.
    """
    group = parser.add_argument_group("server credentials (default: HYBRID_SEARCH_<ENGINE>_* variables)")
    group.add_argument("--user", dest="server_user", help="user name for OpenSearch / Elasticsearch")
    group.add_argument("--password", dest="server_password", help="password (prefer the environment variable)")
    group.add_argument("--api-key", dest="server_api_key", help="API key (prefer the environment variable)")
    group.add_argument("--ca-certs", dest="server_ca_certs", metavar="PATH", help="CA bundle for https")
    group.add_argument(
        "--no-verify",
        dest="server_verify",
        action="store_false",
        default=None,
        help="do not verify the server's TLS certificate",
    )
    spellings = [s for s in ("--timeout", "--server-timeout") if s not in parser._option_string_actions]
    group.add_argument(
        *spellings,
        dest="server_timeout",
        type=float,
        metavar="SECONDS",
        help=f"seconds to wait for each server answer (default {DEFAULT_TIMEOUT:g}); a server that "
        "does not answer in time fails with an error instead of hanging",
    )


def from_arguments(engine: str, args: argparse.Namespace, *, url: str | None = None) -> Credentials:
    """:class:`Credentials` from the flags :func:`add_arguments` adds, falling back to the environment."""
    return Credentials.resolve(
        engine,
        url=url,
        username=getattr(args, "server_user", None),
        password=getattr(args, "server_password", None),
        api_key=getattr(args, "server_api_key", None),
        ca_certs=getattr(args, "server_ca_certs", None),
        verify=getattr(args, "server_verify", None),
        timeout=getattr(args, "server_timeout", None),
    )
