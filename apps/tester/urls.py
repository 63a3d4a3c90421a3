from django.urls import path

from apps.tester import views

app_name = "tester"

urlpatterns = [
    path("", views.tester, name="page"),
]
