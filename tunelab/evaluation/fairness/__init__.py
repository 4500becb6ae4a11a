"""Fairness probes: counterfactual identity-term substitution, EEC gaps, group metrics, CrowS-Pairs."""
