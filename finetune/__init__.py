"""LoRA / QLoRA fine-tuning on interaction data (not built yet; see the issue tracker)."""
