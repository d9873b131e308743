"""Who works on a project and what each may do: the current user's identity, and members with roles.

A project without a member list behaves as it always has: anyone who can open the folder may do
anything, as the user they say they are. Once it has one, every call checks the caller's role:

- ``labeler``: label examples (their own labels);
- ``reviewer``: also write or remove labels authored by someone else (accept, return, correct);
- ``developer``: also configure models and training, add and delete examples, train, approve, deploy;
- ``owner``: also manage the member list.

Roles are enforced by this package, in the API that every view and script goes through. The real
boundary is the file system: a person who can write the project folder can change its files by other
means. Give the folder to a group, and only the team's OS users in it (README: a team on one JupyterHub).
"""

from __future__ import annotations

import getpass
import os

from .errors import PermissionDenied, ValidationError

__all__ = ["ROLES", "allows", "identity", "rank", "require"]

ROLES = ("labeler", "reviewer", "developer", "owner")


def rank(role: str) -> int:
    """The role's place in ``ROLES`` (each role may do everything the ones before it may)."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValidationError(f"a role is one of {', '.join(ROLES)}, not {role!r}") from None


def allows(role: str | None, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (``None``: no member list, so everyone may)."""
    return role is None or rank(role) >= rank(needed)


def require(user: str, role: str | None, needed: str, doing: str) -> None:
    """Refuse ``doing`` unless ``role`` (the user's; ``None`` without a member list) is at least ``needed``."""
    if not allows(role, needed):
        raise PermissionDenied(
            f"{user} is a {role} of this project; {doing} needs the {needed} role (an owner can grant it)"
        )


def identity(asked: str | None, *, members: bool) -> str:
    """Who the current user is.

    On JupyterHub (``JUPYTERHUB_USER`` set) the hub's user, unless the project has no member list and the
    caller names someone (attribution only, as before); a project with members refuses a name other than
    the hub's. Elsewhere the name asked for, else the OS user.
    """
    hub = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub and (members or asked is None):
        if asked is not None and asked != hub:
            raise PermissionDenied(
                f"you are signed in to JupyterHub as {hub!r}; this project has members, so you act as {hub!r}, "
                f"not {asked!r}"
            )
        return hub
    if asked is not None:
        return asked
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"
