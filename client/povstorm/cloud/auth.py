"""Authenticated calls to the submit function.

In the cloud the submit function admits only callers that hold
roles/run.invoker on it and present a Google-signed ID token for its URL.
``IdTokenAuth`` is a ``requests`` auth that attaches one to every request,
cached until shortly before it expires. The token comes from the
application default credentials (``google.auth.default()``):

* a service-account key named by GOOGLE_APPLICATION_CREDENTIALS, or the
  metadata server when running on Google Cloud (Cloud Build, a VM, another
  Cloud Run service): ``google.oauth2.id_token.fetch_id_token``, with a
  ``google.auth.transport.requests.Request``;
* credentials that impersonate a service account
  (``gcloud auth application-default login --impersonate-service-account``):
  an ID token of that account for exactly this audience;
* a developer's own credentials (``gcloud auth application-default login``):
  the ID token Google returns with each refresh, which Cloud Run accepts
  from users holding the invoker role.

``IdTokenAuth(url, credentials=...)`` uses the credentials given instead.

The local stack's submit function has no authentication: ``NoAuth``, or
``auth_for(url)`` to pick by URL. Client code (``Cluster``) passes the auth to
``requests.post(..., auth=...)``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from povstorm.core.errors import PovstormError, TransientError, UserError

# Refresh this long before the token's "exp": a request signed just before
# expiry must still be valid when the function checks it.
REFRESH_MARGIN_SECONDS = 300.0
# Lifetime assumed for a token whose expiry cannot be read (Google's last 1 h).
FALLBACK_LIFETIME_SECONDS = 600.0

_HINT = (
    "use a service-account key (GOOGLE_APPLICATION_CREDENTIALS), run on Google Cloud, or "
    "`gcloud auth application-default login` (optionally --impersonate-service-account=SA)"
)


class NoAuth(requests.auth.AuthBase):
    """The local stack: requests go out unchanged."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r

    def __repr__(self) -> str:
        return "NoAuth()"


class IdTokenAuth(requests.auth.AuthBase):
    """Bearer ID token for ``audience`` (the submit function's URL), fetched
    with google-auth and reused until ``refresh_margin`` seconds before it
    expires. Thread-safe: concurrent requests share one fetch."""

    def __init__(
        self,
        audience: str,
        *,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        credentials: Any = None,
        request: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not audience:
            raise UserError("an ID token needs an audience: the submit function's URL")
        self.audience = audience
        self._margin = refresh_margin
        # google.auth credentials to mint tokens with; None: the application
        # default credentials, looked up at the first fetch.
        self._credentials = credentials
        self._request = request  # a google.auth.transport.Request; built lazily
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expiry = 0.0

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r

    def __repr__(self) -> str:
        return f"IdTokenAuth({self.audience!r})"

    def token(self) -> str:
        """The cached token, or a new one when it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._expiry - self._margin:
                token = self._fetch()
                self._token = token
                self._expiry = token_expiry(
                    token, default=self._clock() + FALLBACK_LIFETIME_SECONDS
                )
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (say, after a 401): the next call fetches one."""
        with self._lock:
            self._token = None
            self._expiry = 0.0

    # --- fetching ------------------------------------------------------------------

    def _transport(self) -> Any:
        if self._request is None:
            import google.auth.transport.requests

            self._request = google.auth.transport.requests.Request()
        return self._request

    def _fetch(self) -> str:
        import google.auth
        from google.auth import exceptions as gexc

        request = self._transport()
        try:
            # Application default credentials first: finding them costs no
            # network round trip unless they are the metadata server's, whereas
            # fetch_id_token pings the metadata server before it gives up.
            credentials = self._credentials
            if credentials is None:
                credentials, _ = google.auth.default()
            return self._id_token_for(credentials, request, ambient=self._credentials is None)
        except gexc.TransportError as exc:
            raise TransientError(f"cannot reach the token service: {exc}") from exc
        except gexc.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise TransientError(f"ID token refresh failed: {exc}") from exc
            raise PovstormError(f"ID token refresh failed for {self.audience}: {exc}") from exc
        except gexc.DefaultCredentialsError as exc:
            raise UserError(f"no credentials for an ID token ({exc}): {_HINT}") from exc

    def _id_token_for(self, credentials: Any, request: Any, ambient: bool) -> str:
        from google.auth import impersonated_credentials
        from google.oauth2 import id_token, service_account

        if isinstance(credentials, impersonated_credentials.Credentials):
            id_creds = impersonated_credentials.IDTokenCredentials(
                credentials, target_audience=self.audience, include_email=True
            )
            id_creds.refresh(request)
            return str(id_creds.token)
        if hasattr(credentials, "id_token") and hasattr(credentials, "refresh_token"):
            # A user's own credentials: Google returns an ID token with each refresh.
            credentials.refresh(request)
            if credentials.id_token:
                return str(credentials.id_token)
            raise UserError(f"the user credentials returned no ID token: {_HINT}")
        if isinstance(credentials, service_account.Credentials) and not ambient:
            # A key handed in directly (fetch_id_token only reads the environment's).
            sa_creds = service_account.IDTokenCredentials(
                credentials.signer,
                credentials.service_account_email,
                token_uri=credentials._token_uri,
                target_audience=self.audience,
            )
            sa_creds.refresh(request)
            return str(sa_creds.token)
        # The environment's service-account key (GOOGLE_APPLICATION_CREDENTIALS)
        # or the metadata server (on Google Cloud): google-auth's own path.
        return str(id_token.fetch_id_token(request, self.audience))


def token_expiry(token: str, default: float) -> float:
    """The "exp" claim of a JWT (seconds since the epoch), read without
    verifying the signature: the receiver verifies, we only schedule refreshes."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return default


def auth_for(url: str) -> requests.auth.AuthBase:
    """``NoAuth`` for the local stack (plain http on this machine), an
    ``IdTokenAuth`` for the function's URL otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return NoAuth()
    return IdTokenAuth(f"{parts.scheme}://{parts.netloc}")


__all__ = ["IdTokenAuth", "NoAuth", "auth_for", "token_expiry"]
