"""Every dashboard view is scoped to one organization the signed-in user belongs to.

`organization_view` resolves the organization in the URL for the user's membership and hands it to
the view; anyone else gets a 404 (not a 403: outsiders must not learn which organizations exist).
Views that change billing or members add `manager=True`, which answers members with a 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from apps.accounts.models import Membership, Organization, User

SESSION_KEY = "dashboard_organization_id"


@dataclass(frozen=True)
class Scope:
    """The signed-in user, the organization of the page and the user's role in it."""

    user: User
    organization: Organization
    membership: Membership

    @property
    def is_manager(self) -> bool:
        return self.membership.is_manager


def scope_for(request: HttpRequest, organization_id: int) -> Scope:
    user: User = request.user  # type: ignore[assignment]
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization_id=organization_id)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return Scope(user=user, organization=membership.organization, membership=membership)


View = Callable[..., HttpResponse]


def organization_view(*, manager: bool = False) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @login_required
        @functools.wraps(view)
        def wrapper(
            request: HttpRequest, organization_id: int, *args: Any, **kwargs: Any
        ) -> HttpResponse:
            scope = scope_for(request, organization_id)
            if manager and not scope.is_manager:
                raise PermissionDenied("Only owners and admins can do this.")
            if request.session.get(SESSION_KEY) != scope.organization.pk:
                request.session[SESSION_KEY] = scope.organization.pk
            return view(request, scope, *args, **kwargs)

        return wrapper

    return decorate
