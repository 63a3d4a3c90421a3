"""Built-in audio models, run by the engine process: Whisper (faster-whisper) and hibari TTS.

- ``weights``: where their files come from, each pinned by SHA-256.
- ``decode``: any supported container/codec to 16 kHz mono samples (PyAV); safe in web processes.
- ``encode``: synthesized samples to wav, pcm, or a codec PyAV can write, as a stream of bytes.
- ``provider``: AudioProvider, the engine's host of the loaded models.
- ``wire``: what crosses between the engine and its clients for audio.
"""
