"""Console operators: accounts per organisation, one-time password links, signing in.

An operator is added with a role and no password; ``crmsync operators add`` prints a
one-time link (valid :data:`LINK_LIFETIME`) on which they choose one. Passwords are hashed
with argon2 (argon2-cffi's defaults, re-hashed on sign-in when those change). Signing in is
rate-limited in the store, so the limit holds on the embedded default (no Redis) and
across every web process: after :data:`EMAIL_LIMIT` failures for one e-mail, or
:data:`CLIENT_LIMIT` from one client address, within :data:`WINDOW`, attempts are refused
without looking at the password until the oldest of them leaves the window.

Roles, each allowed what the one before it is: ``viewer`` reads; ``operator`` also
resolves conflicts, retries failures, pauses, resumes and syncs; ``admin`` also manages
connections and operators. Operator management is audited with who did it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import email_validator
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from sync.errors import ChooseOrganisation as ChooseOrganisation
from sync.errors import NotFound
from sync.errors import OperatorError as OperatorError
from sync.errors import OrganisationChoice as OrganisationChoice
from sync.errors import SignInLimited as SignInLimited
from sync.errors import SignInRefused as SignInRefused
from sync.store import operator_repository as repo
from sync.store import repository, sync_repository
from sync.store.models import Operator, utcnow

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

#: how long a one-time password link stays valid
LINK_LIFETIME = timedelta(hours=72)
#: the shortest password accepted
MIN_PASSWORD_LENGTH = 12
#: failed sign-ins allowed for one e-mail, and from one client address, within WINDOW
EMAIL_LIMIT = 5
CLIENT_LIMIT = 20
WINDOW = timedelta(minutes=15)

# argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane): a sign-in costs
# tens of milliseconds, not the hundreds of argon2-cffi's default profile, which matters on a
# small host where the sign-in form is also a way to load the server.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when no account matches, so an unknown e-mail costs the same time as a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewOperator:
    """An added operator and the token of their one-time link (shown once, stored hashed)."""

    id: str
    organisation_id: str
    email: str
    role: str
    token: str


def can(role: str, needed: str) -> bool:
    """Whether ``role`` is allowed what ``needed`` is."""
    return _RANK.get(role, -1) >= _RANK[needed]


def actor(operator: Operator) -> str:
    """How the audit trail names an operator."""
    return f"console:{operator.name} <{operator.email}>"


def normalise_email(email: str) -> str:
    try:
        checked = email_validator.validate_email(email.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as error:
        raise OperatorError(f"{email.strip()!r} is not a valid e-mail address: {error}") from None
    return str(checked.normalized).lower()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise OperatorError(f"role must be one of {', '.join(ROLES)}")


def _token_hash(token: str) -> str:
    # tokens are 256-bit random: SHA-256 is enough (as for API keys)
    return hashlib.sha256(token.encode()).hexdigest()


def password_link(base_url: str, token: str) -> str:
    """The one-time link. The token is in the fragment, which browsers never send to a
    server: it reaches crmsync only in the body of the form that sets the password, so no
    access log ever holds it."""
    return f"{base_url.rstrip('/')}/console/set-password#{token}"


def add_operator(
    session: Session,
    organisation_id: str,
    email: str,
    role: str,
    *,
    name: str | None = None,
    by: str,
) -> NewOperator:
    """Add an operator to the organisation, with a one-time link to set their password."""
    _check_role(role)
    address = normalise_email(email)
    if repository.get_organisation(session, organisation_id) is None:
        raise NotFound(f"no organisation {organisation_id}")
    if repo.find_operator(session, organisation_id, address) is not None:
        raise OperatorError(f"{address} is already an operator of this organisation")
    display = (name or "").strip() or address.split("@", 1)[0]
    operator = repo.add_operator(session, organisation_id, address, display[:255], role)
    token = _issue_token(session, operator)
    sync_repository.add_audit(
        session,
        organisation_id,
        by,
        "operator_added",
        operator.id,
        {"email": address, "role": role},
    )
    return NewOperator(operator.id, organisation_id, address, role, token)


def _issue_token(session: Session, operator: Operator) -> str:
    repo.spend_tokens(session, operator.id)
    token = secrets.token_urlsafe(32)
    repo.add_token(session, operator.id, _token_hash(token), utcnow() + LINK_LIFETIME)
    return token


def new_password_link(session: Session, organisation_id: str, email: str, *, by: str) -> str:
    """A new one-time link for an operator (a forgotten password); older links stop working."""
    operator = require_operator_by_email(session, organisation_id, email)
    if not operator.active:
        raise OperatorError(f"{operator.email} was removed; add them again instead")
    token = _issue_token(session, operator)
    sync_repository.add_audit(
        session, organisation_id, by, "operator_link_issued", operator.id, {"email": operator.email}
    )
    return token


def require_operator_by_email(session: Session, organisation_id: str, email: str) -> Operator:
    operator = repo.find_operator(session, organisation_id, normalise_email(email))
    if operator is None:
        raise NotFound(f"no operator {email.strip()!r} in this organisation")
    return operator


def password_token_operator(session: Session, token: str) -> Operator | None:
    """The operator a one-time token is for, while it is unused and unexpired."""
    found = repo.token_by_hash(session, _token_hash(token.strip()))
    if found is None or found.used_at is not None or found.expires_at <= utcnow():
        return None
    operator = repo.operator_by_id(session, found.operator_id)
    return operator if operator is not None and operator.active else None


def set_password(session: Session, token: str, password: str) -> Operator:
    """Set the password of the operator whose one-time link this is; the link is spent,
    and any session of theirs ends."""
    operator = password_token_operator(session, token)
    if operator is None:
        raise OperatorError("this link is not valid any more: ask an admin for a new one")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip().lower() == operator.email:
        raise OperatorError("the password must not be your e-mail address")
    operator.password_hash = _hasher.hash(password)
    operator.session_epoch += 1
    repo.spend_tokens(session, operator.id)
    sync_repository.add_audit(
        session, operator.organisation_id, actor(operator), "operator_password_set", operator.id, {}
    )
    return operator


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    client: str,
    organisation_id: str | None = None,
) -> Operator:
    """The operator with this e-mail and password, once the rate limit allows trying.

    Raises :class:`SignInLimited`, :class:`SignInRefused`, or :class:`ChooseOrganisation`
    when the same e-mail and password are right in several organisations (and
    ``organisation_id`` does not pick one of them)."""
    address = email.strip().lower()[:320]
    client = client[:64]
    now = utcnow()
    since = now - WINDOW
    _check_limit(session, address, client, since, now)
    repo.forget_attempts(session, email=address, client=client, before=since)
    candidates = [
        (operator, org_name)
        for operator, org_name in repo.operators_with_email(session, address)
        if operator.password_hash
    ]
    if not candidates:
        _verify(_DUMMY_HASH, password)
    matches = [
        (operator, org_name)
        for operator, org_name in candidates
        if operator.password_hash and _verify(operator.password_hash, password)
    ]
    if not matches:
        repo.add_attempt(session, address, client, succeeded=False)
        raise SignInRefused("wrong e-mail or password")
    if organisation_id is not None:
        matches = [m for m in matches if m[0].organisation_id == organisation_id]
        if not matches:
            # right password for another organisation's account of this e-mail: refused
            # like any wrong password, naming no organisation
            repo.add_attempt(session, address, client, succeeded=False)
            raise SignInRefused("wrong e-mail or password")
    if len(matches) != 1:
        raise ChooseOrganisation([OrganisationChoice(o.organisation_id, n) for o, n in matches])
    operator = matches[0][0]
    repo.add_attempt(session, address, client, succeeded=True)
    assert operator.password_hash is not None
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    operator.last_sign_in_at = now
    return operator


def _check_limit(session: Session, email: str, client: str, since: datetime, now: datetime) -> None:
    for count, oldest, limit in (
        (*repo.failures_since(session, since=since, email=email), EMAIL_LIMIT),
        (*repo.failures_since(session, since=since, client=client), CLIENT_LIMIT),
    ):
        if count >= limit and oldest is not None:
            wait = (oldest + WINDOW - now).total_seconds()
            raise SignInLimited(max(1, int(wait) + 1))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def signed_in_operator(session: Session, operator_id: str, epoch: int) -> Operator | None:
    """The operator a session names, while they are active and the session is current."""
    operator = repo.operator_by_id(session, operator_id)
    if operator is None or not operator.active or operator.session_epoch != epoch:
        return None
    return operator


def list_operators(session: Session, organisation_id: str) -> list[Operator]:
    return list(repo.list_operators(session, organisation_id))


def set_role(
    session: Session, organisation_id: str, operator_id: str, role: str, *, by: str
) -> Operator:
    """Change an operator's role (the organisation keeps at least one admin)."""
    _check_role(role)
    operator = _require(session, organisation_id, operator_id)
    if operator.role == "admin" and role != "admin" and operator.active:
        _keep_an_admin(session, organisation_id)
    before = operator.role
    operator.role = role
    sync_repository.add_audit(
        session, organisation_id, by, "operator_role_changed", operator.id,
        {"email": operator.email, "from": before, "to": role},
    )  # fmt: skip
    return operator


def remove_operator(session: Session, organisation_id: str, operator_id: str, *, by: str) -> None:
    """Remove an operator: their sessions end and their links stop working (the row stays
    for the audit trail)."""
    operator = _require(session, organisation_id, operator_id)
    if not operator.active:
        return
    if operator.role == "admin":
        _keep_an_admin(session, organisation_id)
    operator.active = False
    operator.session_epoch += 1
    repo.spend_tokens(session, operator.id)
    sync_repository.add_audit(
        session, organisation_id, by, "operator_removed", operator.id, {"email": operator.email}
    )


def _require(session: Session, organisation_id: str, operator_id: str) -> Operator:
    operator = repo.get_operator(session, organisation_id, operator_id)
    if operator is None:
        raise NotFound(f"no operator {operator_id} in this organisation")
    return operator


def _keep_an_admin(session: Session, organisation_id: str) -> None:
    if repo.count_admins(session, organisation_id) <= 1:
        raise OperatorError("this is the organisation's last admin: make another admin first")
