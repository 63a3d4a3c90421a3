from django.urls import path, re_path

from apps.gateway import audio_views, messages_views, responses_views, views
from apps.gateway.endpoint import unknown_v1_path

urlpatterns = [
    path("chat/completions", views.chat_completions),
    path("completions", views.legacy_completions),
    path("embeddings", views.embeddings_create),
    path("models", views.models_list),
    path("models/<path:model_id>", views.model_retrieve),
    path("responses", responses_views.responses_create),
    path("responses/<str:response_id>", responses_views.response_detail),
    path("responses/<str:response_id>/input_items", responses_views.response_input_items),
    path("messages", messages_views.messages_create),
    path("messages/count_tokens", messages_views.messages_count_tokens),
    path("audio/transcriptions", audio_views.transcriptions_create),
    path("audio/translations", audio_views.translations_create),
    path("audio/speech", audio_views.speech_create),
    re_path(r"^.*$", unknown_v1_path),
]
