from django.contrib import admin
from django.urls import include, path, re_path

from apps.gateway.endpoint import unknown_v1_path
from plugsky_site import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("v1/organization/", include("apps.admin_api.urls")),
    path("v1/", include("apps.gateway.urls")),
    re_path(r"^v1$", unknown_v1_path),
    path("billing/", include("apps.billing.urls")),
    path("accounts/", include("apps.accounts.urls")),
    path("dashboard/", include("apps.dashboard.urls")),
    path("dashboard/<int:organization_id>/tester/", include("apps.tester.urls")),
    path("admin/", admin.site.urls),
    path("", include("apps.site.urls")),
]
