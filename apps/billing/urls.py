from django.urls import path

from apps.billing import views

app_name = "billing"

urlpatterns = [
    path("", views.billing_page, name="page"),
    path("checkout", views.checkout_create, name="checkout"),
    path("stripe/webhook", views.stripe_webhook, name="stripe-webhook"),
]
