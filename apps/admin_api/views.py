"""Thin views of the admin API: validate the query or body, call a selector or service, render.

Every view is tenant-scoped by the admin key (`request.auth`): ids of another organization's
objects are simply not found (404), so outsiders cannot learn which exist.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.admin_api import ids, presenters, selectors, services
from apps.admin_api import serializers as shapes
from apps.admin_api.base import AdminAPIView, documented, render, responses
from apps.admin_api.errors import not_found
from apps.admin_api.pagination import list_page
from apps.keys.models import APIKey
from apps.protocol.errors import invalid_value
from apps.site.public import public_base_url

_MICROS_PER_USD = Decimal(1_000_000)


def _limit_micros(limit: dict[str, Any] | None) -> int | None:
    return None if limit is None else int(limit["value"] * _MICROS_PER_USD)


# --- API keys ------------------------------------------------------------------------------------


def _present_keys(keys: list[APIKey]) -> list[dict[str, Any]]:
    limits = selectors.key_limits_micros(api_key_ids=[key.pk for key in keys])
    return [presenters.api_key(key, monthly_limit_micros=limits.get(key.pk)) for key in keys]


class ApiKeysView(AdminAPIView):
    @documented(
        operation_id="list-api-keys",
        parameters=[shapes.ListQuerySerializer],
        responses=responses(200, shapes.ApiKeyListSerializer),
    )
    def get(self, request: Request) -> Response:
        query = self.validated(shapes.ListQuerySerializer, request.query_params)
        keys = selectors.api_keys_of(organization_id=self.identity.organization_id)
        body = list_page(
            keys, prefix=ids.API_KEY, field="pk", after=query.get("after"),
            limit=query["limit"], present=_present_keys,
        )  # fmt: skip
        return render(shapes.ApiKeyListSerializer, body)

    @documented(
        operation_id="create-api-key",
        request=shapes.ApiKeyCreateSerializer,
        responses=responses(201, shapes.ApiKeyCreatedSerializer),
    )
    def post(self, request: Request) -> Response:
        body = self.validated(shapes.ApiKeyCreateSerializer, request.data)
        try:
            api_key, raw_key = services.api_key_create_audited(
                identity=self.identity,
                name=body["name"],
                allowed_models=body["allowed_models"],
                monthly_limit_micros=_limit_micros(body["monthly_spend_limit"]),
            )
        except ValueError as error:  # an unknown model among allowed_models
            raise invalid_value(
                str(error), param="allowed_models", code="model_not_found"
            ) from None
        presented = {**_present_keys([api_key])[0], "value": raw_key}
        return render(shapes.ApiKeyCreatedSerializer, presented, status=201)


class ApiKeyView(AdminAPIView):
    def _key(self, key_id: str) -> APIKey:
        pk = ids.pk_of(ids.API_KEY, key_id)
        organization_id = self.identity.organization_id
        api_key = selectors.api_key_of(organization_id=organization_id, pk=pk) if pk else None
        if api_key is None:
            raise not_found("API key", key_id)
        return api_key

    @documented(operation_id="retrieve-api-key", responses=responses(200, shapes.ApiKeySerializer))
    def get(self, request: Request, key_id: str) -> Response:
        return render(shapes.ApiKeySerializer, _present_keys([self._key(key_id)])[0])

    @documented(
        operation_id="update-api-key",
        request=shapes.ApiKeyUpdateSerializer,
        responses=responses(200, shapes.ApiKeySerializer),
    )
    def post(self, request: Request, key_id: str) -> Response:
        api_key = self._key(key_id)
        body = self.validated(shapes.ApiKeyUpdateSerializer, request.data)
        limit = body.get("monthly_spend_limit", services.UNCHANGED)
        try:
            services.api_key_update_audited(
                identity=self.identity,
                api_key=api_key,
                name=body.get("name"),
                allowed_models=body.get("allowed_models"),
                monthly_limit_micros=limit if limit is services.UNCHANGED else _limit_micros(limit),
            )
        except ValueError as error:
            raise invalid_value(
                str(error), param="allowed_models", code="model_not_found"
            ) from None
        return render(shapes.ApiKeySerializer, _present_keys([self._key(key_id)])[0])

    @documented(operation_id="delete-api-key", responses=responses(200, shapes.DeletedSerializer))
    def delete(self, request: Request, key_id: str) -> Response:
        services.api_key_revoke_audited(identity=self.identity, api_key=self._key(key_id))
        return render(shapes.DeletedSerializer, presenters.deleted("organization.api_key", key_id))


# --- Users ---------------------------------------------------------------------------------------


class UsersView(AdminAPIView):
    @documented(
        operation_id="list-users",
        parameters=[shapes.ListQuerySerializer],
        responses=responses(200, shapes.UserListSerializer),
    )
    def get(self, request: Request) -> Response:
        query = self.validated(shapes.ListQuerySerializer, request.query_params)
        memberships = selectors.memberships_of(organization_id=self.identity.organization_id)
        body = list_page(
            memberships, prefix=ids.USER, field="user_id", after=query.get("after"),
            limit=query["limit"], present=lambda rows: [presenters.user(row) for row in rows],
        )  # fmt: skip
        return render(shapes.UserListSerializer, body)


class UserView(AdminAPIView):
    def _membership(self, user_id: str) -> Any:
        pk = ids.pk_of(ids.USER, user_id)
        organization_id = self.identity.organization_id
        membership = (
            selectors.membership_of(organization_id=organization_id, user_pk=pk) if pk else None
        )
        if membership is None:
            raise not_found("user", user_id)
        return membership

    @documented(operation_id="retrieve-user", responses=responses(200, shapes.UserSerializer))
    def get(self, request: Request, user_id: str) -> Response:
        return render(shapes.UserSerializer, presenters.user(self._membership(user_id)))

    @documented(
        operation_id="modify-user",
        request=shapes.UserRoleSerializer,
        responses=responses(200, shapes.UserSerializer),
    )
    def post(self, request: Request, user_id: str) -> Response:
        membership = self._membership(user_id)
        self.require_manager()
        body = self.validated(shapes.UserRoleSerializer, request.data)
        services.member_role_change_audited(
            identity=self.identity, membership=membership, role=Role(body["role"])
        )
        return render(shapes.UserSerializer, presenters.user(self._membership(user_id)))

    @documented(operation_id="delete-user", responses=responses(200, shapes.DeletedSerializer))
    def delete(self, request: Request, user_id: str) -> Response:
        membership = self._membership(user_id)
        if membership.user_id != self.identity.membership.user_id:
            self.require_manager()
        services.member_remove_audited(identity=self.identity, membership=membership)
        return render(shapes.DeletedSerializer, presenters.deleted("organization.user", user_id))


# --- Invites -------------------------------------------------------------------------------------


def _present_invite(invitation: Any) -> dict[str, Any]:
    return presenters.invite(invitation, now=timezone.now())


class InvitesView(AdminAPIView):
    @documented(
        operation_id="list-invites",
        parameters=[shapes.ListQuerySerializer],
        responses=responses(200, shapes.InviteListSerializer),
    )
    def get(self, request: Request) -> Response:
        self.require_manager()
        query = self.validated(shapes.ListQuerySerializer, request.query_params)
        invitations = selectors.invitations_of(organization_id=self.identity.organization_id)
        body = list_page(
            invitations, prefix=ids.INVITE, field="pk", after=query.get("after"),
            limit=query["limit"], present=lambda rows: [_present_invite(row) for row in rows],
        )  # fmt: skip
        return render(shapes.InviteListSerializer, body)

    @documented(
        operation_id="invite-user",
        request=shapes.InviteCreateSerializer,
        responses=responses(201, shapes.InviteSerializer),
    )
    def post(self, request: Request) -> Response:
        self.require_manager()
        body = self.validated(shapes.InviteCreateSerializer, request.data)
        invitation = services.invite_create_audited(
            identity=self.identity,
            email=body["email"],
            role=Role(body["role"]),
            base_url=public_base_url(request),
        )
        return render(shapes.InviteSerializer, _present_invite(invitation), status=201)


class InviteView(AdminAPIView):
    def _invitation(self, invite_id: str) -> Any:
        self.require_manager()
        pk = ids.pk_of(ids.INVITE, invite_id)
        organization_id = self.identity.organization_id
        invitation = selectors.invitation_of(organization_id=organization_id, pk=pk) if pk else None
        if invitation is None:
            raise not_found("invite", invite_id)
        return invitation

    @documented(operation_id="retrieve-invite", responses=responses(200, shapes.InviteSerializer))
    def get(self, request: Request, invite_id: str) -> Response:
        return render(shapes.InviteSerializer, _present_invite(self._invitation(invite_id)))

    @documented(operation_id="delete-invite", responses=responses(200, shapes.DeletedSerializer))
    def delete(self, request: Request, invite_id: str) -> Response:
        invitation = self._invitation(invite_id)
        services.invite_revoke_audited(identity=self.identity, invitation=invitation)
        return render(
            shapes.DeletedSerializer, presenters.deleted("organization.invite", invite_id)
        )
