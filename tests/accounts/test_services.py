from io import StringIO

from django.core.management import call_command

from apps.accounts.models import Membership, Organization, Role, User
from apps.keys import secrets
from apps.keys.models import APIKey


def test_new_user_owns_a_personal_organization(db):
    user = User.objects.create_user("New@Example.com", "pw-long-enough-123")
    assert user.email == "new@example.com"
    assert user.check_password("pw-long-enough-123")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal


def test_superuser_also_gets_an_organization(db):
    user = User.objects.create_superuser("root@example.com", "pw-long-enough-123")
    assert user.is_staff and user.is_superuser
    assert Organization.objects.filter(memberships__user=user).count() == 1


def test_create_api_key_command_prints_only_a_working_key(db):
    out = StringIO()
    call_command("create_api_key", "--email", "cli@example.com", "--name", "shell", stdout=out)
    raw_key = out.getvalue().strip()
    assert secrets.is_well_formed(raw_key)
    api_key = APIKey.objects.get(digest=secrets.digest(raw_key))
    assert api_key.name == "shell"
    assert api_key.organization.memberships.get().user.email == "cli@example.com"


def test_create_api_key_command_reuses_an_existing_user(db):
    call_command("create_api_key", "--email", "twice@example.com", stdout=StringIO())
    call_command("create_api_key", "--email", "twice@example.com", stdout=StringIO())
    assert User.objects.filter(email="twice@example.com").count() == 1
    assert APIKey.objects.filter(created_by__email="twice@example.com").count() == 2
