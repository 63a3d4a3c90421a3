"""The wire vocabulary shared by the gateway and the providers: OpenAI's request schemas
(`openai`) and its error envelope (`errors`). No Django models, no imports of other apps."""
