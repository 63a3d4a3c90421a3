"""What crosses between the engine and its clients for audio (errors as in engine_wire).

- ``POST /audio/transcribe?model=…&task=…``: the body is 16 kHz mono little-endian int16 PCM
  (the gateway decodes the upload first: it must know the duration to hold credit, and refuse
  undecodable audio before anything is held). Options travel as query parameters
  (``language``, ``prompt``, ``temperature``, ``words=true``). The answer streams NDJSON as a
  generation does (engine_wire): a chunk ``{"info": {"language", "duration"}}``, then one
  ``{"segment": {...}}`` per segment as Whisper decodes it (OpenAI's verbose_json segment
  fields, and its ``words`` when asked), then ``{"done": true}``.
- ``POST /audio/speak`` with JSON ``{"model", "input", "voice", "speed"}`` (the voice one of
  the entry's): the answer streams
  24 kHz mono little-endian int16 PCM (``application/octet-stream``) as sentences are
  synthesized. An error before the first byte comes with its own status and an error object;
  a synthesis that fails later cuts the response off (no final chunk): a broken stream.
"""

from __future__ import annotations

TRANSCRIBE_PATH = "/audio/transcribe"
SPEAK_PATH = "/audio/speak"
PCM_CONTENT_TYPE = "application/octet-stream"
TRANSCRIBE_SAMPLE_RATE = 16_000
SPEECH_SAMPLE_RATE = 24_000
TRANSCRIBE_TASKS = frozenset({"transcribe", "translate"})
