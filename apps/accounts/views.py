"""Thin views of the account pages: signup, email verification, sign-in, password reset, invites."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import LoginForm, SignupForm
from apps.accounts.models import User
from apps.accounts.services import (
    EmailTaken,
    InvitationInvalid,
    account_signup,
    email_verification_send,
    invitation_for_token,
)
from apps.accounts.throttle import email_throttle, login_throttles, signup_throttle
from apps.onboarding.services import email_verify, invitation_accept
from apps.site.public import client_ip, public_base_url

_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing in: a local `next`, else the dashboard."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _too_many(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    minutes = settings.ACCOUNTS_LOGIN_FAILURE_WINDOW_S // 60
    context["error"] = (
        f"Too many attempts from your connection. Wait {minutes} minutes and try again, "
        "or reset your password."
    )
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(settings.ACCOUNTS_LOGIN_FAILURE_WINDOW_S)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = SignupForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    context: dict[str, Any] = {"form": form, "next": _next_url(request)}
    if request.method != "POST":
        return render(request, "accounts/signup.html", context)
    ip = client_ip(request)
    if signup_throttle().is_blocked(ip):
        return _too_many(request, "accounts/signup.html", context)
    # Every attempt counts, also a taken email: otherwise the form tests addresses for free.
    signup_throttle().hit(ip)
    if not form.is_valid():
        return render(request, "accounts/signup.html", context, status=400)
    try:
        user = account_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            full_name=form.cleaned_data["full_name"],
            base_url=public_base_url(request),
        )
    except EmailTaken:
        form.add_error(
            "email", "An account with this email exists. Sign in, or reset your password."
        )
        return render(request, "accounts/signup.html", context, status=400)
    login(request, user, backend=_BACKEND)
    messages.info(
        request,
        f"Welcome! We sent a confirmation link to {user.email}. "
        "Confirm your email to receive your trial credit.",
    )
    return redirect(_next_url(request))


@require_http_methods(["GET"])
def verify(request: HttpRequest, token: str) -> HttpResponse:
    try:
        user = email_verify(token=token)
    except ValidationError as error:
        return render(
            request, "accounts/verify_failed.html", {"error": error.messages[0]}, status=400
        )
    messages.success(request, "Your email is confirmed and your trial credit has been added.")
    if request.user.is_authenticated and request.user.pk == user.pk:
        return redirect(settings.LOGIN_REDIRECT_URL)
    return redirect(f"{reverse('accounts:login')}?email={user.email}")


@login_required
@require_POST
def verify_resend(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    if user.is_email_verified:
        messages.info(request, "Your email is already confirmed.")
    elif email_throttle().hit(f"verify:{user.pk}") > email_throttle().limit:
        messages.error(request, "We sent several links already. Check your spam folder.")
    else:
        email_verification_send(user=user, base_url=public_base_url(request))
        messages.success(request, f"We sent a new confirmation link to {user.email}.")
    return redirect(_next_url(request))


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect(_next_url(request))
    form = LoginForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    context: dict[str, Any] = {"form": form, "next": _next_url(request)}
    if request.method != "POST":
        return render(request, "accounts/login.html", context)
    if not form.is_valid():
        return render(request, "accounts/login.html", context, status=400)
    ip = client_ip(request)
    identity = f"{ip}|{form.cleaned_data['email'].lower()}"
    per_email, per_ip = login_throttles()
    if per_email.is_blocked(identity) or per_ip.is_blocked(ip):
        return _too_many(request, "accounts/login.html", context)
    user = authenticate(
        request, email=form.cleaned_data["email"].lower(), password=form.cleaned_data["password"]
    )
    if user is None:
        per_email.hit(identity)
        per_ip.hit(ip)
        context["error"] = "That email and password do not match an account."
        return render(request, "accounts/login.html", context, status=400)
    per_email.reset(identity)
    login(request, user)
    return redirect(_next_url(request))


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password-reset-done")

    def form_valid(self, form: Any) -> HttpResponse:
        if email_throttle().hit(f"reset:{client_ip(self.request)}") > email_throttle().limit:
            # Same page either way: it must not tell whether the address has an account.
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password-reset-complete")


@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = invitation_for_token(token=token)
    except InvitationInvalid as error:
        return render(request, "accounts/invitation.html", {"error": str(error)}, status=410)
    context: dict[str, Any] = {"invitation": invite, "path": request.get_full_path()}
    if request.method == "GET" or not request.user.is_authenticated:
        return render(request, "accounts/invitation.html", context)
    try:
        membership = invitation_accept(token=token, user=request.user)
    except (InvitationInvalid, PermissionDenied) as error:
        context["error"] = str(error)
        return render(request, "accounts/invitation.html", context, status=403)
    messages.success(request, f"You joined {membership.organization.name}.")
    return redirect("dashboard:overview", organization_id=membership.organization_id)
