"""Sessions on a PKCS#11 token: finding the token, logging in once per process, reopening after a failure.

One job: hand `Pkcs11KMS` a usable session under a lock, and turn the token's device, session and PIN
failures into our `KMSUnavailable` / `KMSPermissionDenied`. It is separate from the key operations
because PKCS#11 login state is per application, not per session (a trap that bit us: python-pkcs11's
`Session.close()` calls C_Logout and logs out every other session of the process), and that bookkeeping
is the same whatever the sessions are then used for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cryptography.hazmat.primitives import constant_time, hashes, hmac

from cleanroom.errors import ConfigurationError, KMSPermissionDenied, KMSUnavailable


class TokenSession:
    """One read-write session on the token labelled `token_label`, opened lazily and reopened after a loss.

    `lib` is a loaded `pkcs11.lib`, `errors` the `pkcs11.exceptions` module (passed in so that this
    module does not import the optional extra). Calls are serialised by an RLock (one session per
    `Pkcs11KMS`; PKCS#11 sessions are not safe for concurrent use).
    """

    def __init__(
        self, lib: Any, errors: Any, token_label: str, user_pin: str, login_key: tuple[str, str], retry_after_s: float
    ) -> None:
        self._lib, self._errors = lib, errors
        self._token_label, self._pin = token_label, user_pin
        self._login_key, self._retry_after_s = login_key, retry_after_s
        self.lock = threading.RLock()
        self._session: Any = None

    def open(self) -> Any:
        """Our own session, sharing the process's login (PKCS#11 logs in per application, not per session)."""
        if self._session is not None:
            return self._session
        e = self._errors
        try:
            token = self._lib.get_token(token_label=self._token_label)
        except e.NoSuchToken:
            raise KMSUnavailable(
                f"no PKCS#11 token labelled {self._token_label!r}", retry_after_s=self._retry_after_s
            ) from None
        except e.MultipleTokensReturned:
            raise ConfigurationError(f"several PKCS#11 tokens are labelled {self._token_label!r}") from None
        try:
            _LOGINS.ensure(token, self._login_key, self._pin)
            # No PIN here: this session rides on the login above, so closing it never logs anyone out.
            self._session = token.open(rw=True)
        except (e.PinIncorrect, e.PinLocked, e.PinExpired, e.PinInvalid, e.PinLenRange) as exc:
            raise KMSPermissionDenied(
                f"PKCS#11 token {self._token_label!r} refused the user PIN ({type(exc).__name__})"
            ) from None
        except e.PKCS11Error as exc:
            raise KMSUnavailable(
                f"cannot open a session on PKCS#11 token {self._token_label!r} ({type(exc).__name__})",
                retry_after_s=self._retry_after_s,
            ) from None
        return self._session

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The session, under the lock; device and session failures become KMSUnavailable and reopen."""
        e = self._errors
        lost = (
            e.DeviceError, e.DeviceMemory, e.DeviceRemoved, e.TokenNotPresent, e.TokenNotRecognised,
            e.SessionClosed, e.SessionHandleInvalid, e.UserNotLoggedIn, e.HostMemory,
        )  # fmt: skip
        with self.lock:
            session = self.open()
            try:
                yield session
            except lost as exc:
                self.drop()
                _LOGINS.forget(self._login_key)  # log in afresh on the next call
                raise KMSUnavailable(
                    f"PKCS#11 token {self._token_label!r} failed ({type(exc).__name__})",
                    retry_after_s=self._retry_after_s,
                ) from None

    def drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with suppress(self._errors.PKCS11Error):
                session.close()

    def close(self) -> None:
        with self.lock:
            self.drop()


class _ProcessLogins:
    """One logged-in session per (module, token) for the whole process.

    PKCS#11 login state belongs to the application: a second C_Login fails with
    CKR_USER_ALREADY_LOGGED_IN, and python-pkcs11's `Session.close()` calls C_Logout, which would log out
    every other session of the process. So one holder session logs in and stays open; each `Pkcs11KMS`
    works in its own PIN-less session. A later instance must present the same PIN (compared as an HMAC
    under a per-process random key, in constant time), or it is refused as if the token had refused it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[tuple[str, str], tuple[Any, bytes]] = {}
        self._mac_key = os.urandom(32)

    def _mac(self, pin: str) -> bytes:
        mac = hmac.HMAC(self._mac_key, hashes.SHA256())
        mac.update(pin.encode())
        return mac.finalize()

    def ensure(self, token: Any, key: tuple[str, str], pin: str) -> None:
        import pkcs11.exceptions as e

        with self._lock:
            held = self._holders.get(key)
            if held is not None:
                if not constant_time.bytes_eq(held[1], self._mac(pin)):
                    raise e.PinIncorrect()
                return
            try:
                holder = token.open(user_pin=pin, rw=True)
            except e.UserAlreadyLoggedIn:  # logged in outside this registry (another library in-process)
                holder = token.open(rw=True)
            self._holders[key] = (holder, self._mac(pin))

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            held = self._holders.pop(key, None)
        if held is not None:
            with suppress(Exception):
                held[0].close()


_LOGINS = _ProcessLogins()
