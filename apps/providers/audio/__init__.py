"""Built-in audio models, run by the engine process: Whisper (faster-whisper) and hibari TTS.

- ``weights``: where their files come from, each pinned by SHA-256.
- ``decode``: any supported container/codec to 16 kHz mono samples (PyAV), in the engine.
- ``uploads``: decoded uploads kept between the gateway's probe and its transcription.
- ``encode``: synthesized samples to wav, pcm, or a codec PyAV can write, as a stream of bytes
  (in web processes: the gateway encodes the engine's PCM in the client's format).
- ``provider``: AudioProvider, the engine's host of the loaded models.
- ``wire``: what crosses between the engine and its clients for audio.
"""
