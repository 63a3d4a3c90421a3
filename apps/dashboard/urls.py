from django.urls import path

from apps.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("<int:organization_id>/", views.overview, name="overview"),
    path("<int:organization_id>/keys/", views.keys, name="keys"),
    path("<int:organization_id>/keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("<int:organization_id>/usage/", views.usage, name="usage"),
    path("<int:organization_id>/usage/requests/", views.usage_requests, name="usage-requests"),
    path("<int:organization_id>/usage/export.csv", views.usage_export, name="usage-export"),
    path("<int:organization_id>/organization/", views.organization, name="organization"),
    path("<int:organization_id>/organization/invite/", views.invite, name="invite"),
    path(
        "<int:organization_id>/organization/invitations/<int:invitation_id>/withdraw/",
        views.invitation_withdraw,
        name="invitation-withdraw",
    ),
    path(
        "<int:organization_id>/organization/members/<int:membership_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "<int:organization_id>/organization/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path("<int:organization_id>/organization/name/", views.organization_name, name="rename"),
    path(
        "<int:organization_id>/organization/admin-keys/",
        views.admin_key_create,
        name="admin-key-create",
    ),
    path(
        "<int:organization_id>/organization/admin-keys/<int:admin_key_id>/revoke/",
        views.admin_key_revoke,
        name="admin-key-revoke",
    ),
    path("<int:organization_id>/receipts/<int:topup_id>/", views.receipt, name="receipt"),
]
