"""Groups from public identity providers, named by who owns them.

On GitHub and GitLab anyone can create an organization or a top-level group, so a bare
group name (``loopml-admins``) proves nothing. There a group is *qualified* by its owner
and counts only when that owner is one ``oauth.allowed_organizations`` names:

==========  ==========================  ============================================
provider    a group is                  it counts when
==========  ==========================  ============================================
github      ``org:team`` (org login,    ``org`` is an allowed organization
            team slug)
gitlab      the group's full path       the path is an allowed path or below one
            (``org/sub/team``)
others      the provider's name as is   always (the operator runs the provider)
==========  ==========================  ============================================

Names are compared in lower case (GitHub logins and GitLab paths are case-insensitive).
A counted group ``<allowed><sep><prefix>P`` (``myorg:loopml-demo``, ``myorg/loopml-demo``:
a direct child of an allowed organization or path) also gives the user the project group
``<prefix>P`` of project P; nothing else does.

In ``admin_groups`` and ``allowed_groups`` a bare name (no ``:`` for github; for gitlab, not
an allowed path or below one, and no ``/``) stands for that team / subgroup of each allowed
organization: the default ``loopml-admins`` is ``myorg:loopml-admins``. A qualified name
whose owner is not allowed is a configuration error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loopml.errors import InvalidInput

SEPARATORS = {"github": ":", "gitlab": "/"}


@dataclass(frozen=True)
class GroupPolicy:
    """Which of a provider's groups count, and which project groups they give."""

    provider: str
    organizations: frozenset[str]  # lower-cased; unused for providers without owners
    project_prefix: str

    @classmethod
    def of(cls, provider: str, organizations: Iterable[str], project_prefix: str) -> GroupPolicy:
        """The policy of ``provider``; :class:`InvalidInput` when organizations are given to a
        provider whose groups have no owner."""
        organizations = frozenset(o.strip().lower() for o in organizations if o.strip())
        if organizations and provider not in SEPARATORS:
            raise InvalidInput(f"oauth.allowed_organizations is for the github and gitlab providers, not "
                               f"{provider!r}: remove it (this provider's groups are used as they are)")
        return cls(provider, organizations, project_prefix)

    @property
    def qualified(self) -> bool:
        """Whether this provider's groups are qualified by an owner."""
        return self.provider in SEPARATORS

    @property
    def separator(self) -> str:
        return SEPARATORS[self.provider]

    def owner(self, group: str) -> str | None:
        """The allowed organization (path) that owns ``group`` (lower case), else None."""
        if self.provider == "github":
            org, sep, team = group.partition(":")
            return org if sep and team and org in self.organizations else None
        candidates = [o for o in self.organizations if group == o or group.startswith(o + "/")]
        return max(candidates, key=len, default=None)

    def user_groups(self, provider_groups: Iterable[str]) -> list[str]:
        """The user's groups from what the provider says: every provider group that counts,
        plus the project group ``<prefix>P`` of each ``<allowed><sep><prefix>P``."""
        names = {g for g in provider_groups if isinstance(g, str) and g}
        if not self.qualified:
            return sorted(names)
        counted = {g.lower() for g in names if self.owner(g.lower())}
        projects = set()
        for group in counted:
            for org in self.organizations:
                child = group.removeprefix(org + self.separator) if group.startswith(org + self.separator) else None
                if child and child.startswith(self.project_prefix) and self.separator not in child:
                    projects.add(child)
        return sorted(counted | projects)

    def configured(self, setting: str, names: Iterable[str]) -> set[str]:
        """The groups of ``oauth.<setting>`` as they are matched: bare names qualified with
        each allowed organization; :class:`InvalidInput` for a qualified name of any other owner."""
        if not self.qualified:
            return set(names)
        found: set[str] = set()
        for name in (n.strip().lower() for n in names):
            if self.owner(name):
                found.add(name)
            elif self.separator in name:
                raise InvalidInput(
                    f"oauth.{setting} names {name!r}, a {self.provider} group outside oauth.allowed_organizations "
                    f"({', '.join(sorted(self.organizations)) or 'none'}): add its "
                    f"{'organization' if self.provider == 'github' else 'parent path'} there, or remove it")
            else:
                found |= {f"{org}{self.separator}{name}" for org in self.organizations}
        return found


def github_groups(policy: GroupPolicy, auth_state: dict[str, Any]) -> list[str]:
    """The groups of a GitHub user: ``org:team`` of each team oauthenticator listed in
    ``auth_state["teams"]`` (GitHub's ``/user/teams``), kept by ``policy``."""
    teams = [t for t in auth_state.get("teams") or [] if isinstance(t, dict)]
    return policy.user_groups(f"{(t.get('organization') or {}).get('login', '')}:{t.get('slug', '')}" for t in teams)


def claim_groups(policy: GroupPolicy, claim: str, auth_state: dict[str, Any]) -> list[str]:
    """The groups of an OIDC user: the userinfo claim ``claim`` (GitLab: full group paths),
    kept by ``policy``."""
    groups = (auth_state.get("oauth_user") or {}).get(claim)
    return policy.user_groups(groups if isinstance(groups, list) else [])


def check_settings(oauth: Any, project_prefix: str) -> None:
    """Raise :class:`InvalidInput` for group settings the hub would refuse (no network: for
    ``loopml up`` to say so before it starts anything)."""
    policy = GroupPolicy.of(oauth.provider, oauth.allowed_organizations, project_prefix)
    policy.configured("admin_groups", oauth.admin_groups)
    policy.configured("allowed_groups", oauth.allowed_groups)
