from django.urls import path, re_path

from apps.gateway import views
from apps.gateway.endpoint import unknown_v1_path

urlpatterns = [
    path("chat/completions", views.chat_completions),
    path("completions", views.legacy_completions),
    path("embeddings", views.embeddings_create),
    path("models", views.models_list),
    path("models/<path:model_id>", views.model_retrieve),
    re_path(r"^.*$", unknown_v1_path),
]
