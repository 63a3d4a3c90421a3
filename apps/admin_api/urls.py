"""/v1/organization/…: mounted in plugsky_site/urls.py before the /v1 gateway's catch-all, so
paths that are not here still get the gateway's JSON 404."""

from django.urls import include, path
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from apps.admin_api import report_views, schema, views

api_patterns = [
    path("api_keys", views.ApiKeysView.as_view()),
    path("api_keys/<str:key_id>", views.ApiKeyView.as_view()),
    path("users", views.UsersView.as_view()),
    path("users/<str:user_id>", views.UserView.as_view()),
    path("invites", views.InvitesView.as_view()),
    path("invites/<str:invite_id>", views.InviteView.as_view()),
    path("usage/completions", report_views.UsageCompletionsView.as_view()),
    path("usage/embeddings", report_views.UsageEmbeddingsView.as_view()),
    path("usage/audio_speeches", report_views.UsageAudioSpeechesView.as_view()),
    path("usage/audio_transcriptions", report_views.UsageAudioTranscriptionsView.as_view()),
    path("costs", report_views.CostsView.as_view()),
    path("credits", report_views.CreditsView.as_view()),
]

_schema_view = SpectacularAPIView.as_view(
    patterns=[path("v1/organization/", include(api_patterns))],
    custom_settings=schema.SETTINGS,
    renderer_classes=[OpenApiJsonRenderer],
    authentication_classes=[],
    permission_classes=[AllowAny],
)

urlpatterns = [*api_patterns, path("openapi.json", _schema_view, name="admin-api-openapi")]
