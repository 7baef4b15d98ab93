"""Estimators: intervals on rates, paired differences and correlations, three-way verdicts."""
