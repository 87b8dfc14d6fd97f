"""Language models: backends behind one small interface (``base.ChatBackend``: in-process
transformers, an OpenAI-compatible server, a scripted fake for tests), and the vLLM server
itself (``serving`` starts and watches it, ``quantize`` writes the INT8 copy it serves on CPU)."""
