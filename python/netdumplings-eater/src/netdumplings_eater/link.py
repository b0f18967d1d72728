"""The client side of a link to nd-hub: TLS and tokens, mirroring the Rust ``hub-link`` crate.

* ``HOST:PORT`` means ``ws://HOST:PORT`` (as the original); ``wss://HOST:PORT`` uses TLS,
  verified against the system roots, or against ``tls_ca`` (a PEM file) alone when given.
* ``tls_client_cert``/``tls_client_key`` present a client certificate (hubs started with
  ``--tls-client-ca`` require one).
* The bearer token is read from ``token_file`` or the ``ND_HUB_TOKEN`` environment variable,
  never taken as a literal argument (so it is not written into scripts or command lines),
  and sent as ``Authorization: Bearer ...`` on the WebSocket upgrade.

Every problem raises :class:`HubLinkError` with a message naming the bad thing and what to
do; ``fatal`` says whether retrying cannot help (bad certificate, refused token).
"""

import os
import ssl

import websockets

TOKEN_ENV = "ND_HUB_TOKEN"
# Tokens are ~43 characters; the bound keeps a wrong file from being sent as a header.
MAX_TOKEN_BYTES = 4096
# A token, certificate or key file larger than this is not one (as the Rust client).
MAX_FILE_BYTES = 1 << 20


class HubLinkError(Exception):
    """A link to the hub could not be set up or made. ``fatal``: retrying cannot help."""

    def __init__(self, message, fatal=True):
        super().__init__(message)
        self.fatal = fatal


def hub_uri(hub):
    """``HOST:PORT`` -> ``ws://HOST:PORT``; ``ws://`` and ``wss://`` URIs unchanged."""
    return hub if hub.startswith(("ws://", "wss://")) else "ws://" + hub


def _read_small(path, what):
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise HubLinkError("cannot use {} {}: over 1 MiB".format(what, path))
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise HubLinkError("cannot use {} {}: {}".format(what, path, e.strerror or e))


def check_token(text, source):
    """Trim and check a token as the Rust client does; raises :class:`HubLinkError`."""
    text = text.strip()
    if not text:
        raise HubLinkError("bad hub token from {}: it is empty".format(source))
    if len(text.encode("utf-8")) > MAX_TOKEN_BYTES:
        raise HubLinkError("bad hub token from {}: it is over 4096 bytes".format(source))
    if not all(33 <= ord(c) <= 126 for c in text):
        raise HubLinkError(
            "bad hub token from {}: it holds spaces or non-ASCII characters".format(source))
    return text


def load_token(token_file=None, environ=None):
    """The token from ``token_file``, else from ``ND_HUB_TOKEN`` (None when neither)."""
    if token_file is not None:
        raw = _read_small(token_file, "token file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HubLinkError("bad hub token from {}: it is not UTF-8 text".format(
                token_file))
        return check_token(text, str(token_file))
    env = os.environ if environ is None else environ
    text = env.get(TOKEN_ENV, "")
    if not text.strip():
        return None
    return check_token(text, TOKEN_ENV)


def tls_context(tls_ca=None, tls_client_cert=None, tls_client_key=None):
    """Client TLS settings: the system roots, or only ``tls_ca``; an optional client
    certificate. Hostnames are checked (connect by a name the hub's certificate holds)."""
    if (tls_client_cert is None) != (tls_client_key is None):
        raise HubLinkError("tls_client_cert and tls_client_key go together: give both")
    if tls_ca is not None:
        _read_small(tls_ca, "CA file")  # names a missing/huge file before ssl does
        try:
            ctx = ssl.create_default_context(cafile=str(tls_ca))
        except (ssl.SSLError, ValueError) as e:
            raise HubLinkError("cannot use CA file {}: no PEM certificate in it ({})".format(
                tls_ca, e))
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_client_cert is not None:
        _read_small(tls_client_cert, "client certificate")
        _read_small(tls_client_key, "client key")
        try:
            ctx.load_cert_chain(str(tls_client_cert), str(tls_client_key))
        except ssl.SSLError as e:
            raise HubLinkError(
                "cannot use client certificate {} with key {}: {} (they must be PEM and "
                "belong together)".format(tls_client_cert, tls_client_key, e))
    return ctx


def _status_of(error):
    """The HTTP status of a refused upgrade (new and legacy websockets APIs)."""
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "status_code"):
        return response.status_code
    return getattr(error, "status_code", None)


class Link:
    """Everything needed to reach a hub: TLS settings (built once) and the token."""

    def __init__(self, tls_ca=None, tls_client_cert=None, tls_client_key=None,
                 token_file=None):
        self.token = load_token(token_file)
        self._files = (tls_ca, tls_client_cert, tls_client_key)
        self._tls = None
        # Built now when any TLS file is given, so bad files fail at construction.
        if tls_ca is not None or tls_client_cert is not None:
            self._tls = tls_context(*self._files)

    def __repr__(self):
        return "Link(tls_ca={!r}, token={})".format(
            self._files[0], "<redacted>" if self.token else None)

    def connect_kwargs(self, uri):
        """Keyword arguments for ``websockets.connect(uri, ...)``."""
        kwargs = {}
        if uri.startswith("wss://"):
            if self._tls is None:
                self._tls = tls_context(*self._files)
            kwargs["ssl"] = self._tls
        if self.token is not None:
            headers = {"Authorization": "Bearer " + self.token}
            major = int(websockets.version.version.split(".")[0])
            # websockets 14 renamed extra_headers (legacy client) to additional_headers.
            kwargs["additional_headers" if major >= 14 else "extra_headers"] = headers
        return kwargs

    def connect(self, uri, **extra):
        """``websockets.connect`` with TLS and token (use as ``async with``)."""
        return websockets.connect(uri, **self.connect_kwargs(uri), **extra)

    def classify(self, uri, error):
        """Turn a connection error into a :class:`HubLinkError` saying what to do (an
        untrusted certificate, a TLS failure, a refused token), or None for the rest."""
        if isinstance(error, ssl.SSLCertVerificationError):
            return HubLinkError(
                "TLS: the hub at {} presented a certificate this client does not trust: {} "
                "(pass the hub's CA with tls_ca=FILE, and connect by a name the certificate "
                "holds)".format(uri, error.verify_message or error))
        cause = error
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        # A TLS connection cut short (hub restarting) is a network failure, worth retrying.
        if isinstance(cause, ssl.SSLError) and not isinstance(
                cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            hint = ""
            if "CERTIFICATE_REQUIRED" in str(cause).upper() or "CERTIFICATE" in str(cause):
                hint = (" (the hub may require a client certificate: pass "
                        "tls_client_cert=FILE and tls_client_key=FILE)")
            return HubLinkError("TLS with {} failed: {}{}".format(uri, cause, hint))
        if (isinstance(error, websockets.exceptions.InvalidMessage)
                and isinstance(error.__cause__, EOFError) and uri.startswith("wss://")
                and self._files[1] is None):
            # A TLS 1.3 hub refusing a missing client certificate closes the stream after
            # the handshake; Python's ssl surfaces that as an empty HTTP response.
            return HubLinkError(
                "TLS with {} failed: the hub closed the connection before answering the "
                "upgrade (it may require a client certificate: pass tls_client_cert=FILE and "
                "tls_client_key=FILE)".format(uri))
        if isinstance(error, websockets.exceptions.InvalidHandshake):
            status = _status_of(error)
            if status == 401:
                return HubLinkError(
                    "the hub at {} refused this client's token (HTTP 401): give a valid token "
                    "with token_file=FILE or {}".format(uri, TOKEN_ENV))
            if status == 403:
                return HubLinkError(
                    "the hub at {} refused this client's token on this port (HTTP 403): it "
                    "belongs to a principal of another role".format(uri))
        return None
