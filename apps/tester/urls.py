from django.urls import path

from apps.tester import audio_views, views

app_name = "tester"

urlpatterns = [
    path("", views.tester, name="page"),
    path("audio/transcriptions", audio_views.transcription_create, name="transcription"),
    path("audio/speech", audio_views.speech_create, name="speech"),
]
