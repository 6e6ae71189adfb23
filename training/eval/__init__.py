"""Evaluation: BIG-bench multiple choice, HHH-Adversarial, LLM judge, reports (`sa-eval`)."""
