"""Sequential multi-task fine-tuning of SmolVLA on Kuavo tasks."""
