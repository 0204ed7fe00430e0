"""Evaluating runs: metrics, the evaluation command and the study."""
