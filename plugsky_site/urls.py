from django.contrib import admin
from django.urls import include, path, re_path

from apps.gateway.endpoint import unknown_v1_path
from plugsky_site import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("v1/", include("apps.gateway.urls")),
    re_path(r"^v1$", unknown_v1_path),
    path("billing/", include("apps.billing.urls")),
    path("admin/", admin.site.urls),
]
