"""Writes for accounts: users, signup and email verification, organizations, members, invitations.

Accounts is the lowest layer: it imports no other app. What follows from these writes in other
apps is orchestrated above: the trial credit by apps.onboarding, revoking a removed member's keys
by apps.dashboard.services.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts import emails
from apps.accounts.models import Invitation, Membership, Organization, Role, User
from apps.accounts.signals import invitation_accepted

_VERIFY_SALT = "plugsky.accounts.verify-email"


class EmailTaken(Exception):
    """An account with this email address exists already."""


class InvitationInvalid(Exception):
    """The invitation link is unknown, used, revoked or expired (the message says which)."""


# --- Users and signup ----------------------------------------------------------------------------


@transaction.atomic
def user_create(
    *, email: str, password: str | None = None, is_email_verified: bool = True, **fields: Any
) -> User:
    """Create a user together with a personal organization that the user owns.

    `is_email_verified` defaults to True for users an operator creates; self-service signup goes
    through `account_signup`, which creates them unverified until they click the emailed link.
    """
    email = User.objects.normalize_email(email).lower()
    user = User(email=email, **fields)
    user.set_password(password)  # None gives an unusable password (API-only users)
    if is_email_verified:
        user.email_verified_at = timezone.now()
    user.save()
    organization_create(name=f"{email}'s organization", owner=user, is_personal=True)
    return user


def account_signup(*, email: str, password: str, base_url: str, full_name: str = "") -> User:
    """Self-service signup: an unverified user, and the verification link sent by email."""
    try:
        with transaction.atomic():
            user = user_create(
                email=email, password=password, full_name=full_name.strip(), is_email_verified=False
            )
            if user.full_name:
                Organization.objects.filter(is_personal=True, memberships__user=user).update(
                    name=f"{user.full_name}'s organization"
                )
    except IntegrityError:
        raise EmailTaken(email) from None
    email_verification_send(user=user, base_url=base_url)
    return user


def email_verification_token(*, user: User) -> str:
    """A signed, expiring token for the verification link; tied to the address it was sent to."""
    return signing.dumps({"user": user.pk, "email": user.email}, salt=_VERIFY_SALT)


def email_verification_send(*, user: User, base_url: str) -> None:
    """Email the verification link (after the surrounding transaction commits)."""
    token = email_verification_token(user=user)
    transaction.on_commit(
        lambda: emails.verification_send(user=user, token=token, base_url=base_url)
    )


def email_verify(*, token: str) -> User:
    """Mark the token's user verified (onboarding.email_verify adds their trial).

    Raises ValidationError for a tampered, expired or outdated link. Running it twice is harmless.
    """
    try:
        payload = signing.loads(
            token, salt=_VERIFY_SALT, max_age=settings.ACCOUNTS_VERIFY_LINK_MAX_AGE_S
        )
    except signing.SignatureExpired:
        raise ValidationError("This verification link has expired.", code="expired") from None
    except signing.BadSignature:
        raise ValidationError("This verification link is not valid.", code="invalid") from None
    user = User.objects.filter(pk=payload.get("user"), email=payload.get("email")).first()
    if user is None:
        raise ValidationError("This verification link is not valid.", code="invalid")
    _email_mark_verified(user)
    return user


def _email_mark_verified(user: User) -> None:
    """The user owns their address: record it."""
    User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(
        email_verified_at=timezone.now()
    )
    user.refresh_from_db(fields=["email_verified_at"])


# --- Organizations and members -------------------------------------------------------------------


@transaction.atomic
def organization_create(*, name: str, owner: User, is_personal: bool = False) -> Organization:
    """Create an organization with its first owner (onboarding adds the trial)."""
    organization = Organization.objects.create(name=name, is_personal=is_personal)
    Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
    return organization


def organization_rename(*, organization: Organization, name: str, renamed_by: User) -> None:
    """Rename the organization (owners and admins)."""
    _require_manager(renamed_by, organization)
    name = name.strip()
    if not name:
        raise ValidationError("Enter a name.")
    Organization.objects.filter(pk=organization.pk).update(name=name[:200])
    organization.name = name[:200]


def membership_add(*, organization: Organization, user: User, role: Role) -> Membership:
    """Add a user to an organization with a role."""
    return Membership.objects.create(organization=organization, user=user, role=role)


def _membership_of(user: User, organization: Organization) -> Membership | None:
    return Membership.objects.filter(user=user, organization=organization).first()


def _require_manager(user: User, organization: Organization) -> Membership:
    membership = _membership_of(user, organization)
    if membership is None or not membership.is_manager:
        raise PermissionDenied("Only owners and admins manage members and settings.")
    return membership


def _owners_after(membership: Membership, *, new_role: str | None) -> int:
    """How many owners the organization would have after `membership` changes to `new_role`."""
    owners = Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
    count = owners.exclude(pk=membership.pk).count()
    return count + (1 if new_role == Role.OWNER else 0)


def _check_may_change(actor: Membership, target: Membership, new_role: str | None) -> None:
    touches_owner = target.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and actor.role != Role.OWNER:
        raise PermissionDenied("Only owners can change or remove owners.")
    if target.role == Role.OWNER and _owners_after(target, new_role=new_role) == 0:
        raise ValidationError("An organization needs at least one owner.", code="last_owner")


@transaction.atomic
def membership_role_change(*, membership: Membership, role: Role, changed_by: User) -> None:
    """Change a member's role. Admins manage members and admins; only owners touch owners."""
    organization = Organization.objects.select_for_update().get(pk=membership.organization_id)
    actor = _require_manager(changed_by, organization)
    _check_may_change(actor, membership, role)
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role


@transaction.atomic
def membership_remove(*, membership: Membership, removed_by: User) -> None:
    """Remove a member (managers), or leave (anyone but the last owner).

    The keys the person created are revoked by the caller, in the same transaction
    (dashboard.services.membership_remove_with_keys): keys sit above accounts.
    """
    organization = Organization.objects.select_for_update().get(pk=membership.organization_id)
    if membership.user_id != removed_by.pk:
        actor = _require_manager(removed_by, organization)
        _check_may_change(actor, membership, None)
    elif membership.role == Role.OWNER and _owners_after(membership, new_role=None) == 0:
        raise ValidationError("An organization needs at least one owner.", code="last_owner")
    membership.delete()


# --- Invitations ---------------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    *, organization: Organization, email: str, role: Role, invited_by: User, base_url: str
) -> Invitation:
    """Invite an address (managers only); inviting it again renews the link and resends it."""
    actor = _require_manager(invited_by, organization)
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise PermissionDenied("Only owners can invite owners.")
    email = User.objects.normalize_email(email).strip().lower()
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ValidationError(f"{email} is already a member.", code="already_member")
    token = secrets.token_urlsafe(32)
    fields = {
        "role": role,
        "token_digest": _token_digest(token),
        "invited_by": invited_by,
        "created_at": timezone.now(),
        "expires_at": timezone.now() + timedelta(days=settings.ACCOUNTS_INVITATION_TTL_DAYS),
    }
    with transaction.atomic():
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    organization=organization, email=email, **fields
                )
        except IntegrityError:  # an open invitation exists: renew it (insert first, then update)
            invitation = Invitation.objects.select_for_update().get(
                organization=organization,
                email=email,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
            )
            for name, value in fields.items():
                setattr(invitation, name, value)
            invitation.save(update_fields=list(fields))
        transaction.on_commit(
            lambda: emails.invitation_send(invitation=invitation, token=token, base_url=base_url)
        )
    return invitation


def invitation_for_token(*, token: str) -> Invitation:
    """The open invitation behind a link, or InvitationInvalid."""
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_digest=_token_digest(token))
        .first()
    )
    if invitation is None or invitation.revoked_at is not None:
        raise InvitationInvalid("This invitation link is not valid (it may have been withdrawn).")
    if invitation.accepted_at is not None:
        raise InvitationInvalid("This invitation has already been accepted.")
    if invitation.expires_at <= timezone.now():
        raise InvitationInvalid("This invitation has expired. Ask for a new one.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the organization as the invited role; only the invited address can accept.

    Accepting proves the user reads that mailbox, so it also verifies their email.
    """
    invitation = invitation_for_token(token=token)
    if invitation.email.lower() != user.email.lower():
        raise PermissionDenied(f"This invitation was sent to {invitation.email}.")
    is_claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_at=timezone.now(), accepted_by=user
    )
    if not is_claimed:
        raise InvitationInvalid("This invitation has already been accepted.")
    if not user.is_email_verified:
        _email_mark_verified(user)
    membership, _ = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation_accepted.send(sender=Invitation, invitation=invitation, membership=membership)
    return membership


def invitation_revoke(*, invitation: Invitation, revoked_by: User) -> None:
    """Withdraw an open invitation (managers); its link stops working."""
    _require_manager(revoked_by, invitation.organization)
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        revoked_at=timezone.now()
    )
