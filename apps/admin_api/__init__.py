"""The organization admin API at /v1/organization/…, shaped like OpenAI's Administration API."""
