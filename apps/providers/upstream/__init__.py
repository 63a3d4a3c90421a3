"""Providers for model servers reached over HTTP: any OpenAI-compatible server, Anthropic's
Messages API and Gemini's generateContent; `http` is what they share."""
