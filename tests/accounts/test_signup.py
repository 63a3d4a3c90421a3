import re

import pytest
from django.core import mail
from django.core.cache import cache

from apps.accounts.models import Organization, User
from apps.accounts.services import email_verification_token
from apps.billing.models import CreditAccount, EntryKind, LedgerEntry

PASSWORD = "a long and unusual passphrase 42"
# Emails leave after their transaction commits: these tests commit like production does.
pytestmark = pytest.mark.django_db(transaction=True)


def _signup(client, email="new@example.com", password=PASSWORD, **extra):  # type: ignore[no-untyped-def]
    data = {"email": email, "password": password, "full_name": "New Person", **extra}
    return client.post("/accounts/signup/", data)


def _verify_link(recipient: str) -> str:
    [message] = [m for m in mail.outbox if recipient in m.to]
    return re.search(r"http://testserver(/accounts/verify/\S+/)", message.body).group(1)


def _balance(user: User) -> int:
    organization = Organization.objects.get(is_personal=True, memberships__user=user)
    account = CreditAccount.objects.filter(organization=organization).first()
    return account.balance_micros if account else 0


def test_signup_creates_an_unverified_user_without_trial_and_signs_in(client, db):
    response = _signup(client)
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    user = User.objects.get(email="new@example.com")
    assert not user.is_email_verified
    assert user.check_password(PASSWORD)
    assert _balance(user) == 0
    assert not LedgerEntry.objects.exists()
    organization = Organization.objects.get(memberships__user=user)
    assert organization.name == "New Person's organization"
    assert client.get("/dashboard/", follow=True).context["user"] == user


def test_the_emailed_link_verifies_and_grants_five_dollars_once(client, db):
    _signup(client)
    user = User.objects.get(email="new@example.com")
    link = _verify_link("new@example.com")
    assert "Confirm" in mail.outbox[0].subject

    response = client.get(link)
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_email_verified
    assert _balance(user) == 5_000_000

    client.get(link)  # a second click changes nothing
    assert _balance(user) == 5_000_000
    assert LedgerEntry.objects.filter(kind=EntryKind.TRIAL_GRANT).count() == 1
    page = client.get("/dashboard/", follow=True).content.decode()
    assert "$5.00" in page
    assert "Confirm your email to get" not in page


def test_a_tampered_link_verifies_nothing(client, db):
    _signup(client)
    link = _verify_link("new@example.com")
    response = client.get(link[:-3] + "xx/")
    assert response.status_code == 400
    assert not User.objects.get(email="new@example.com").is_email_verified
    assert not LedgerEntry.objects.exists()


def test_an_expired_link_is_refused(client, db, settings):
    _signup(client)
    link = _verify_link("new@example.com")
    settings.ACCOUNTS_VERIFY_LINK_MAX_AGE_S = -1
    response = client.get(link)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not LedgerEntry.objects.exists()


def test_a_link_sent_to_an_old_address_does_not_verify_the_new_one(client, db):
    _signup(client)
    user = User.objects.get(email="new@example.com")
    token = email_verification_token(user=user)
    User.objects.filter(pk=user.pk).update(email="changed@example.com")
    assert client.get(f"/accounts/verify/{token}/").status_code == 400
    assert not LedgerEntry.objects.exists()


def test_a_taken_email_is_refused_without_creating_anything(client, owner):
    users_before = User.objects.count()
    response = _signup(client, email="OWNER@example.com")
    assert response.status_code == 400
    assert "An account with this email exists" in response.content.decode()
    assert User.objects.count() == users_before
    assert mail.outbox == []


def test_weak_passwords_are_refused(client, db):
    response = _signup(client, password="password")
    assert response.status_code == 400
    assert not User.objects.exists()


def test_signup_needs_the_csrf_token(db):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(
        "/accounts/signup/", {"email": "x@example.com", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert not User.objects.exists()


def test_resending_the_link_sends_a_new_email(client, db):
    _signup(client)
    client.post("/accounts/verify/resend/")
    assert len([m for m in mail.outbox if "new@example.com" in m.to]) == 2


def test_operator_created_users_are_verified_and_have_their_trial(owner, organization):
    assert owner.is_email_verified
    assert CreditAccount.objects.get(organization=organization).balance_micros == 5_000_000


# --- Login ---------------------------------------------------------------------------------------


def test_login_and_logout(client, owner):
    response = client.post(
        "/accounts/login/",
        {"email": "Owner@Example.com", "password": "correct horse battery staple"},
    )
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302
    assert client.get("/accounts/logout/").status_code == 405  # logging out is a POST
    client.post("/accounts/logout/")
    assert client.get("/dashboard/")["Location"].startswith("/accounts/login/")


def test_login_redirects_only_to_local_next_urls(client, owner):
    data = {"email": "owner@example.com", "password": "correct horse battery staple"}
    response = client.post("/accounts/login/?next=https://evil.example/", data)
    assert response["Location"] == "/dashboard/"
    client.post("/accounts/logout/")
    response = client.post("/accounts/login/?next=/docs/", data)
    assert response["Location"] == "/docs/"


def test_a_wrong_password_is_a_friendly_400(client, owner):
    response = client.post("/accounts/login/", {"email": "owner@example.com", "password": "nope"})
    assert response.status_code == 400
    assert "do not match" in response.content.decode()


def test_login_attempts_are_rate_limited_per_address_and_email(client, owner, settings):
    settings.ACCOUNTS_LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/accounts/login/", {"email": "owner@example.com", "password": "guess"})
    # Even the right password is refused while the pause lasts.
    response = client.post(
        "/accounts/login/",
        {"email": "owner@example.com", "password": "correct horse battery staple"},
    )
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.ACCOUNTS_LOGIN_FAILURE_WINDOW_S)
    assert "Too many attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session

    cache.clear()  # the window passed
    response = client.post(
        "/accounts/login/",
        {"email": "owner@example.com", "password": "correct horse battery staple"},
    )
    assert response.status_code == 302


def test_spraying_many_emails_from_one_address_is_limited_too(client, owner, settings):
    settings.ACCOUNTS_LOGIN_FAILURE_LIMIT_PER_IP = 4
    for index in range(4):
        client.post("/accounts/login/", {"email": f"user{index}@example.com", "password": "x"})
    response = client.post(
        "/accounts/login/",
        {"email": "owner@example.com", "password": "correct horse battery staple"},
    )
    assert response.status_code == 429


# --- Password reset ------------------------------------------------------------------------------


def test_password_reset_by_email(client, owner):
    response = client.post("/accounts/password-reset/", {"email": "owner@example.com"})
    assert response.status_code == 302
    [message] = mail.outbox
    path = re.search(r"http://testserver(/accounts/password-reset/\S+/)", message.body).group(1)
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    new = "another long passphrase 77"
    response = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new)


def test_password_reset_does_not_tell_whether_an_account_exists(client, db):
    response = client.post("/accounts/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []


def test_signups_are_limited_per_address_even_for_taken_emails(client, owner, settings):
    """A taken email counts too: otherwise the form would test which addresses have accounts."""
    settings.ACCOUNTS_SIGNUP_LIMIT_PER_IP = 2
    for _ in range(2):
        assert _signup(client, email="owner@example.com").status_code == 400
    response = _signup(client, email="brand-new@example.com")
    assert response.status_code == 429
    assert not User.objects.filter(email="brand-new@example.com").exists()
