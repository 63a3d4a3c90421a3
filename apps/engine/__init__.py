"""The engine process: the built-in models (llama.cpp, embedders, the image reader) behind HTTP.

Run it with ``python -m apps.engine`` (``make run`` does). It listens on PLUGSKY_ENGINE_URL
(``http://host:port`` or ``unix:/path/to.sock``) and hosts one LocalProvider for the catalog's
local entries; web processes and Celery workers reach it through
``apps.providers.engine_client``. ``wire`` is the protocol both sides share; ``server`` the ASGI
app. It uses Django's settings (the catalog) but neither the database nor Redis.
"""
