"""Thin views of the dashboard: overview, API keys, usage, organization, receipts.

Every view runs under `organization_view` (apps/dashboard/access.py): signed in, a member of the
organization in the URL (else 404), and a manager where it changes billing or members (else 403).
"""

from __future__ import annotations

import csv
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.forms import InvitationForm, OrganizationNameForm, RoleForm
from apps.accounts.models import Role
from apps.accounts.selectors import personal_organization_for
from apps.admin_api.audit import audit_events_for
from apps.billing.pricing import cost_header_value
from apps.dashboard import selectors
from apps.dashboard.access import SESSION_KEY, Scope, organization_view, scope_for
from apps.dashboard.charts import chart_payload
from apps.dashboard.forms import AdminKeyCreateForm, KeyCreateForm, UsageRangeForm
from apps.dashboard.services import (
    admin_key_create_audited,
    admin_key_revoke_audited,
    api_key_create_with_limits,
    api_key_revoke_audited,
    invitation_create_audited,
    invitation_revoke_audited,
    membership_remove_with_keys,
    membership_role_change_audited,
    organization_rename_audited,
)
from apps.site.public import api_base_url, public_base_url
from apps.usage.endpoints import Unit, unit_of
from apps.usage.models import UsageRecord


def _render(
    request: HttpRequest, scope: Scope, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    context = {
        "organization": scope.organization,
        "membership": scope.membership,
        "is_manager": scope.is_manager,
        **context,
    }
    return render(request, template, context, status=status)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The last organization used in this session, else the user's personal one."""
    organization_id = request.session.get(SESSION_KEY)
    if organization_id:
        try:
            scope_for(request, int(organization_id))
            return redirect("dashboard:overview", organization_id=organization_id)
        except Http404:
            pass
    organization = personal_organization_for(user=request.user)  # type: ignore[arg-type]
    return redirect("dashboard:overview", organization_id=organization.pk)


@require_GET
@organization_view()
def overview(request: HttpRequest, scope: Scope) -> HttpResponse:
    context = {
        "section": "overview",
        "overview": selectors.overview_for(organization=scope.organization),
        "recent": selectors.recent_requests_for(organization=scope.organization, limit=5),
        "base_url": api_base_url(request),
    }
    return _render(request, scope, "dashboard/overview.html", context)


# --- API keys ------------------------------------------------------------------------------------


def _keys_page(
    request: HttpRequest, scope: Scope, form: KeyCreateForm, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {
        "section": "keys",
        "form": form,
        "keys": selectors.keys_for(organization=scope.organization),
        "base_url": api_base_url(request),
        **extra,
    }
    return _render(request, scope, "dashboard/keys.html", context, status)


@require_http_methods(["GET", "POST"])
@organization_view()
def keys(request: HttpRequest, scope: Scope) -> HttpResponse:
    if request.method == "GET":
        return _keys_page(request, scope, KeyCreateForm())
    form = KeyCreateForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, scope, form, status=400, show_form=True)
    api_key, raw_key = api_key_create_with_limits(
        organization=scope.organization,
        created_by=scope.user,
        name=form.cleaned_data["name"],
        allowed_models=form.cleaned_data["allowed_models"],
        monthly_limit_micros=form.monthly_limit_micros,
    )
    # The only response that ever carries the full key: never cached, never stored.
    response = _keys_page(
        request, scope, KeyCreateForm(), status=201, new_key=api_key, raw_key=raw_key
    )
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@organization_view()
def key_revoke(request: HttpRequest, scope: Scope, key_id: int) -> HttpResponse:
    api_key = selectors.key_of(organization=scope.organization, key_id=key_id)
    if api_key is None:
        raise Http404("No such key.")
    may_revoke = scope.is_manager or api_key.created_by_id == scope.user.pk
    if not may_revoke:
        raise PermissionDenied("Only owners, admins or the key's creator can revoke it.")
    if request.method == "GET":
        context = {"section": "keys", "key": api_key}
        return _render(request, scope, "dashboard/key_revoke.html", context)
    api_key_revoke_audited(api_key=api_key, revoked_by=scope.user)
    messages.success(request, f"The key “{api_key.name}” ({api_key.display}) was revoked.")
    return redirect("dashboard:keys", organization_id=scope.organization.pk)


# --- Usage ---------------------------------------------------------------------------------------


@require_GET
@organization_view()
def usage(request: HttpRequest, scope: Scope) -> HttpResponse:
    days, by = UsageRangeForm(request.GET).range()
    series = selectors.usage_series(organization=scope.organization, days=days, by=by)
    context = {
        "section": "usage",
        "days": days,
        "by": by,
        "series": series,
        "chart": chart_payload(series),
        "recent": selectors.recent_requests_for(organization=scope.organization),
    }
    return _render(request, scope, "dashboard/usage.html", context)


@require_GET
@organization_view()
def usage_requests(request: HttpRequest, scope: Scope) -> HttpResponse:
    """The recent-requests table alone: htmx refreshes it in place."""
    context = {"recent": selectors.recent_requests_for(organization=scope.organization)}
    return _render(request, scope, "dashboard/_requests_table.html", context)


# Audio calls fill audio_seconds or speech_characters instead of the token columns.
_CSV_COLUMNS = [
    "created_at", "request_id", "endpoint", "model", "api_key", "source", "prompt_tokens",
    "completion_tokens", "audio_seconds", "speech_characters", "cost_usd", "latency_ms", "status",
    "error_code", "stream",
]  # fmt: skip


@require_GET
@organization_view()
def usage_export(request: HttpRequest, scope: Scope) -> HttpResponse:
    days, _ = UsageRangeForm(request.GET).range()
    since = timezone.now() - timedelta(days=days)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"plugsky-usage-{scope.organization.pk}-{timezone.now():%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(_CSV_COLUMNS)
    for record in selectors.usage_records_since(organization=scope.organization, since=since):
        writer.writerow(_csv_row(record))
    return response


def _spreadsheet_safe(text: str) -> str:
    """Customer-chosen text (key names) must not run as a formula when the CSV is opened."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _csv_amounts(record: UsageRecord) -> list[object]:
    """prompt_tokens, completion_tokens, audio_seconds, speech_characters: one unit filled."""
    unit = unit_of(record.endpoint)
    if unit == Unit.SECONDS:
        return ["", "", record.prompt_tokens, ""]
    if unit == Unit.CHARACTERS:
        return ["", "", "", record.prompt_tokens]
    return [record.prompt_tokens, record.completion_tokens, "", ""]


def _csv_row(record: UsageRecord) -> list[object]:
    key = record.api_key
    return [
        record.created_at.isoformat(),
        record.request_id,
        record.endpoint,
        record.model,
        _spreadsheet_safe(f"{key.name} ({key.display})") if key else "",
        "tester" if record.is_tester else "api",
        *_csv_amounts(record),
        cost_header_value(record.cost_micros),  # exact dollars, always six decimals
        record.latency_ms,
        record.status,
        record.error_code,
        "yes" if record.is_stream else "no",
    ]


# --- Organization --------------------------------------------------------------------------------


def _organization_page(
    request: HttpRequest, scope: Scope, *, status: int = 200, **forms: Any
) -> HttpResponse:
    context = {
        "section": "organization",
        "members": selectors.members_for(organization=scope.organization),
        "invitations": selectors.open_invitations_for(organization=scope.organization)
        if scope.is_manager
        else [],
        "invite_form": forms.get("invite_form") or InvitationForm(),
        "name_form": forms.get("name_form")
        or OrganizationNameForm(initial={"name": scope.organization.name}),
        "roles": Role.choices,
        "error": forms.get("error", ""),
        **_admin_context(scope, forms),
    }
    return _render(request, scope, "dashboard/organization.html", context, status)


def _admin_context(scope: Scope, forms: dict[str, Any]) -> dict[str, Any]:
    """Admin keys for owners (who alone create them), the audit log for owners and admins."""
    is_owner = scope.membership.role == Role.OWNER
    return {
        "is_owner": is_owner,
        "admin_keys": selectors.admin_keys_for(organization=scope.organization) if is_owner else [],
        "admin_key_form": forms.get("admin_key_form") or AdminKeyCreateForm(),
        "new_admin_key": forms.get("new_admin_key"),
        "raw_admin_key": forms.get("raw_admin_key", ""),
        "audit_events": audit_events_for(organization=scope.organization)
        if scope.is_manager
        else [],
    }


@require_GET
@organization_view()
def organization(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _organization_page(request, scope)


def _require_owner(scope: Scope) -> None:
    if scope.membership.role != Role.OWNER:
        raise PermissionDenied("Only owners manage admin keys.")


@require_POST
@organization_view(manager=True)
def admin_key_create(request: HttpRequest, scope: Scope) -> HttpResponse:
    _require_owner(scope)
    form = AdminKeyCreateForm(request.POST)
    if not form.is_valid():
        return _organization_page(request, scope, status=400, admin_key_form=form)
    admin_key, raw_key = admin_key_create_audited(
        organization=scope.organization, created_by=scope.user, name=form.cleaned_data["name"]
    )
    # The only response that ever carries the full admin key: never cached, never stored.
    response = _organization_page(
        request, scope, status=201, new_admin_key=admin_key, raw_admin_key=raw_key
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@organization_view(manager=True)
def admin_key_revoke(request: HttpRequest, scope: Scope, admin_key_id: int) -> HttpResponse:
    _require_owner(scope)
    admin_key = selectors.admin_key_of(organization=scope.organization, admin_key_id=admin_key_id)
    if admin_key is None:
        raise Http404("No such admin key.")
    admin_key_revoke_audited(admin_key=admin_key, revoked_by=scope.user)
    messages.success(
        request, f"The admin key “{admin_key.name}” ({admin_key.display}) was revoked."
    )
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


@require_POST
@organization_view(manager=True)
def invite(request: HttpRequest, scope: Scope) -> HttpResponse:
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _organization_page(request, scope, status=400, invite_form=form)
    try:
        invitation = invitation_create_audited(
            organization=scope.organization,
            email=form.cleaned_data["email"],
            role=Role(form.cleaned_data["role"]),
            invited_by=scope.user,
            base_url=public_base_url(request),
        )
    except ValidationError as error:
        form.add_error("email", error)
        return _organization_page(request, scope, status=400, invite_form=form)
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


@require_POST
@organization_view(manager=True)
def invitation_withdraw(request: HttpRequest, scope: Scope, invitation_id: int) -> HttpResponse:
    invitation = selectors.invitation_of(
        organization=scope.organization, invitation_id=invitation_id
    )
    if invitation is None:
        raise Http404("No such invitation.")
    invitation_revoke_audited(invitation=invitation, revoked_by=scope.user)
    messages.success(request, f"The invitation to {invitation.email} was withdrawn.")
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


@require_POST
@organization_view(manager=True)
def member_role(request: HttpRequest, scope: Scope, membership_id: int) -> HttpResponse:
    target = selectors.member_of(organization=scope.organization, membership_id=membership_id)
    form = RoleForm(request.POST)
    if target is None:
        raise Http404("No such member.")
    if not form.is_valid():
        return _organization_page(request, scope, status=400, error="Choose a role.")
    try:
        membership_role_change_audited(
            membership=target, role=Role(form.cleaned_data["role"]), changed_by=scope.user
        )
    except ValidationError as error:
        return _organization_page(request, scope, status=400, error=error.messages[0])
    messages.success(request, f"{target.user.email} is now {target.get_role_display().lower()}.")
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


@require_POST
@organization_view()
def member_remove(request: HttpRequest, scope: Scope, membership_id: int) -> HttpResponse:
    """Managers remove members; anyone may leave (the service enforces both)."""
    target = selectors.member_of(organization=scope.organization, membership_id=membership_id)
    if target is None:
        raise Http404("No such member.")
    try:
        membership_remove_with_keys(membership=target, removed_by=scope.user)
    except ValidationError as error:
        return _organization_page(request, scope, status=400, error=error.messages[0])
    if target.user_id == scope.user.pk:
        messages.success(request, f"You left {scope.organization.name}.")
        request.session.pop(SESSION_KEY, None)
        return redirect("dashboard:home")
    messages.success(request, f"{target.user.email} was removed from the organization.")
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


@require_POST
@organization_view(manager=True)
def organization_name(request: HttpRequest, scope: Scope) -> HttpResponse:
    form = OrganizationNameForm(request.POST)
    if not form.is_valid():
        return _organization_page(request, scope, status=400, name_form=form)
    organization_rename_audited(
        organization=scope.organization, name=form.cleaned_data["name"], renamed_by=scope.user
    )
    messages.success(request, "The organization was renamed.")
    return redirect("dashboard:organization", organization_id=scope.organization.pk)


# --- Receipts ------------------------------------------------------------------------------------


@require_GET
@organization_view(manager=True)
def receipt(request: HttpRequest, scope: Scope, topup_id: int) -> HttpResponse:
    topup = selectors.receipt_of(organization=scope.organization, topup_id=topup_id)
    if topup is None:
        raise Http404("No such receipt.")
    context = {"section": "billing", "topup": topup}
    return _render(request, scope, "dashboard/receipt.html", context)
